<?php
// A JSXC time-limited token made the way SPEC §5 spells it, with PHP's own
// hash functions and without any xcauth code, for the peer tests.
//
//   php make-token.php SECRET_FILE USER DOMAIN EXPIRY   prints the token
//   php make-token.php --vectors                        checks SPEC's vectors
//
// EXPIRY is a unix time; "+N"/"-N" means N seconds from now.

function jsxc_token(string $secret, string $user, string $domain, int $expiry): string
{
    $version = "\x00";
    $secretId = substr(hash('sha256', $secret, true), 0, 2);
    $header = $secretId . pack('N', $expiry);
    $jid = $user . '@' . $domain;
    $mac = substr(hash_hmac('sha256', $version . $header . $jid, $secret, true), 0, 16);
    $plain = rtrim(base64_encode($version . $mac . $header), '=');
    // One pass over the characters, so a replacement is never replaced again.
    return strtr($plain, ['O' => '-', 'I' => '$', 'l' => '%']);
}

if ($argc === 2 && $argv[1] === '--vectors') {
    $vectors = [
        ['tuser', 'tdomain', 4600, 'AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg'],
        ['user3', 'domain3', 3601, 'ABbL+6M8K7HGF/vnfaZZi5XFZQAADhE'],
    ];
    $bad = 0;
    foreach ($vectors as [$user, $domain, $expiry, $want]) {
        $got = jsxc_token('01234', $user, $domain, $expiry);
        if ($got !== $want) {
            fwrite(STDERR, "vector $user@$domain: got $got, want $want\n");
            $bad++;
        }
    }
    exit($bad === 0 ? 0 : 1);
}
if ($argc !== 5) {
    fwrite(STDERR, "usage: php make-token.php SECRET_FILE USER DOMAIN EXPIRY | --vectors\n");
    exit(2);
}
$secret = file_get_contents($argv[1]);
if ($secret === false) {
    fwrite(STDERR, "cannot read {$argv[1]}\n");
    exit(2);
}
$secret = preg_replace('/\n$/', '', $secret);
$expiry = $argv[4];
if ($expiry[0] === '+' || $expiry[0] === '-') {
    $expiry = time() + (int) $expiry;
}
echo jsxc_token($secret, $argv[2], $argv[3], (int) $expiry), "\n";
