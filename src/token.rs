//! JSXC time-limited tokens, checked locally (SPEC §5).
//!
//! A token is `base64(version || mac || secret_id || expiry)` (23 bytes, 31
//! characters without padding) with `O`, `I` and `l` replaced by `-`, `$` and
//! `%`. The MAC is the first 16 bytes of HMAC-SHA256 keyed with the API
//! secret over `version || secret_id || expiry || user "@" domain`.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The only token version there is.
const VERSION: u8 = 0;
/// Decoded token length: version (1) + MAC (16) + secret id (2) + expiry (4).
const TOKEN_BYTES: usize = 23;
/// Bytes of the truncated HMAC-SHA256.
const MAC_BYTES: usize = 16;
/// Encoded length without padding (`ceil(23 * 4 / 3)`).
const TOKEN_CHARS: usize = 31;
/// Encoded length with the one `=` of padding that 23 bytes need.
const TOKEN_CHARS_PADDED: usize = 32;

/// Standard alphabet; padding optional when decoding (JSXC strips it, a
/// hand-copied token may carry it), never written.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a password turned out to be when read as a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// A token for this user, made with this secret, not yet expired:
    /// accept the login without asking the back end.
    Valid,
    /// A genuine token (right MAC) whose expiry is not in the future: it no
    /// longer logs anyone in.
    Expired,
    /// Shaped like a token, but the MAC does not match this user and secret
    /// (wrong secret, token of another user, or tampering): worth a warning.
    /// The caller may still try it as an ordinary password.
    BadMac,
    /// Not a token at all: an ordinary password.
    NotAToken,
}

/// A secret prepared for token work: its id and a pre-keyed HMAC state, so
/// that each check costs one clone and two hash blocks. Build it once per
/// secret and keep it.
#[derive(Clone)]
pub struct TokenKey {
    secret_id: [u8; 2],
    mac: Hmac<Sha256>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The HMAC state is derived from the secret: show only the public id.
        f.debug_struct("TokenKey")
            .field("secret_id", &hex::encode(self.secret_id))
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// Prepares `secret` (the API secret of the domain, as bytes).
    pub fn new(secret: &[u8]) -> Self {
        let digest = Sha256::digest(secret);
        let secret_id = [digest[0], digest[1]];
        // HMAC accepts keys of every length (long ones are hashed), so this
        // cannot fail whatever the secret is.
        let mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
        TokenKey { secret_id, mac }
    }

    /// The first two bytes of SHA-256(secret), as carried in every token.
    pub fn secret_id(&self) -> [u8; 2] {
        self.secret_id
    }

    /// The MAC state after `version || header || user@domain`.
    fn keyed(&self, header: &[u8; 6], user: &str, domain: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&[VERSION]);
        mac.update(header);
        mac.update(user.as_bytes());
        mac.update(b"@");
        mac.update(domain.as_bytes());
        mac
    }

    /// Makes the token for `user@domain` that expires at `expiry` (Unix
    /// seconds). For tests, benchmarks and the load tool: JSXC makes the
    /// real ones.
    pub fn make(&self, user: &str, domain: &str, expiry: u32) -> String {
        let mut header = [0u8; 6];
        header[..2].copy_from_slice(&self.secret_id);
        header[2..].copy_from_slice(&expiry.to_be_bytes());
        let full = self.keyed(&header, user, domain).finalize().into_bytes();

        let mut raw = [0u8; TOKEN_BYTES];
        raw[0] = VERSION;
        raw[1..1 + MAC_BYTES].copy_from_slice(&full[..MAC_BYTES]);
        raw[1 + MAC_BYTES..].copy_from_slice(&header);
        BASE64
            .encode(raw)
            .chars()
            .map(|c| match c {
                'O' => '-',
                'I' => '$',
                'l' => '%',
                other => other,
            })
            .collect()
    }

    /// Reads `token` (the password as given) for `user@domain` at time `now`
    /// (Unix seconds, the time of this request).
    ///
    /// A wrong MAC is reported as [`TokenCheck::BadMac`] even when the token
    /// has also expired: only a genuine token is [`TokenCheck::Expired`].
    pub fn check(&self, user: &str, domain: &str, token: &str, now: i64) -> TokenCheck {
        let Some(raw) = decode(token) else {
            return TokenCheck::NotAToken;
        };
        let mut header = [0u8; 6];
        header.copy_from_slice(&raw[1 + MAC_BYTES..]);
        let tag = &raw[1..1 + MAC_BYTES];

        // The secret id sits in the header and is covered by the MAC, so a
        // token made with another secret fails here too; the comparison is
        // constant-time.
        if self
            .keyed(&header, user, domain)
            .verify_truncated_left(tag)
            .is_err()
        {
            return TokenCheck::BadMac;
        }
        let expiry = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        if i64::from(expiry) > now {
            TokenCheck::Valid
        } else {
            TokenCheck::Expired
        }
    }
}

/// Undoes the character replacement and decodes; `Some` only for exactly 23
/// bytes starting with version 0. Works on the stack: most passwords are
/// turned away by the length test before anything else happens.
fn decode(token: &str) -> Option<[u8; TOKEN_BYTES]> {
    let text = token.as_bytes();
    if text.len() != TOKEN_CHARS && text.len() != TOKEN_CHARS_PADDED {
        return None;
    }
    let mut b64 = [0u8; TOKEN_CHARS_PADDED];
    for (dst, &src) in b64.iter_mut().zip(text) {
        *dst = match src {
            b'-' => b'O',
            b'$' => b'I',
            b'%' => b'l',
            other => other,
        };
    }
    // Room for the decoder's estimate (whole 3-byte groups).
    let mut out = [0u8; TOKEN_BYTES + 1];
    let len = BASE64.decode_slice(&b64[..text.len()], &mut out).ok()?;
    if len != TOKEN_BYTES || out[0] != VERSION {
        return None;
    }
    let mut raw = [0u8; TOKEN_BYTES];
    raw.copy_from_slice(&out[..TOKEN_BYTES]);
    Some(raw)
}

/// [`TokenKey::make`] for a one-off secret.
pub fn make(secret: &[u8], user: &str, domain: &str, expiry: u32) -> String {
    TokenKey::new(secret).make(user, domain, expiry)
}

/// [`TokenKey::check`] for a one-off secret.
pub fn check(secret: &[u8], user: &str, domain: &str, token: &str, now: i64) -> TokenCheck {
    TokenKey::new(secret).check(user, domain, token, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"01234";
    const T1: &str = "AMydsCzkh8-8vjcb9U2gqV/FZQAAEfg";
    const T3: &str = "ABbL+6M8K7HGF/vnfaZZi5XFZQAADhE";

    #[test]
    fn makes_the_spec_vectors() {
        assert_eq!(make(SECRET, "tuser", "tdomain", 4600), T1);
        assert_eq!(make(SECRET, "user3", "domain3", 3601), T3);
    }

    #[test]
    fn spec_vector_valid_before_expiry_and_expired_after() {
        assert_eq!(
            check(SECRET, "tuser", "tdomain", T1, 2000),
            TokenCheck::Valid
        );
        assert_eq!(
            check(SECRET, "tuser", "tdomain", T1, 5000),
            TokenCheck::Expired
        );
        assert_eq!(
            check(SECRET, "user3", "domain3", T3, 300),
            TokenCheck::Valid
        );
    }

    #[test]
    fn expiry_must_be_strictly_in_the_future() {
        assert_eq!(
            check(SECRET, "tuser", "tdomain", T1, 4599),
            TokenCheck::Valid
        );
        assert_eq!(
            check(SECRET, "tuser", "tdomain", T1, 4600),
            TokenCheck::Expired
        );
    }

    #[test]
    fn version_one_is_not_a_token() {
        let v1 = format!("B{}", &T1[1..]);
        assert_eq!(
            check(SECRET, "tuser", "tdomain", &v1, 2000),
            TokenCheck::NotAToken
        );
    }

    #[test]
    fn padding_is_optional() {
        let padded = format!("{T1}=");
        assert_eq!(
            check(SECRET, "tuser", "tdomain", &padded, 2000),
            TokenCheck::Valid
        );
        let over_padded = format!("{T1}==");
        assert_eq!(
            check(SECRET, "tuser", "tdomain", &over_padded, 2000),
            TokenCheck::NotAToken
        );
    }

    #[test]
    fn wrong_user_domain_or_secret_is_bad_mac() {
        assert_eq!(
            check(SECRET, "tuser2", "tdomain", T1, 2000),
            TokenCheck::BadMac
        );
        assert_eq!(
            check(SECRET, "tuser", "tdomain2", T1, 2000),
            TokenCheck::BadMac
        );
        // The split between user and domain is part of the signed text.
        assert_eq!(
            check(SECRET, "tuser@tdomain", "", T1, 2000),
            TokenCheck::BadMac
        );
        assert_eq!(
            check(b"43210", "tuser", "tdomain", T1, 2000),
            TokenCheck::BadMac
        );
        assert_eq!(check(b"", "tuser", "tdomain", T1, 2000), TokenCheck::BadMac);
    }

    #[test]
    fn bad_mac_wins_over_expiry() {
        assert_eq!(
            check(SECRET, "other", "tdomain", T1, 5000),
            TokenCheck::BadMac
        );
    }

    #[test]
    fn tampered_expiry_is_bad_mac() {
        // Same MAC, later expiry: the last characters encode the expiry.
        let key = TokenKey::new(SECRET);
        let genuine = key.make("u", "d", 1000);
        let later = key.make("u", "d", 0x7fff_ffff);
        let forged = format!("{}{}", &genuine[..23], &later[23..]);
        assert_ne!(forged, genuine);
        assert_eq!(key.check("u", "d", &forged, 0), TokenCheck::BadMac);
    }

    #[test]
    fn flipping_any_character_breaks_the_token() {
        let key = TokenKey::new(SECRET);
        for i in 0..T1.len() {
            let mut chars: Vec<char> = T1.chars().collect();
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let changed: String = chars.into_iter().collect();
            assert_ne!(
                key.check("tuser", "tdomain", &changed, 2000),
                TokenCheck::Valid,
                "position {i}"
            );
        }
    }

    #[test]
    fn ordinary_passwords_are_not_tokens() {
        let key = TokenKey::new(SECRET);
        for password in [
            "",
            "hunter2",
            "correct horse battery staple",
            // Right length, but not base64.
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            // Right alphabet, one character short / long.
            &T1[..30],
            &format!("{T1}A"),
            // Right length in bytes, with a non-alphabet character inside.
            &format!("{}é{}", &T1[..10], &T1[12..]),
            &"A".repeat(10_000),
        ] {
            assert_eq!(
                key.check("tuser", "tdomain", password, 2000),
                TokenCheck::NotAToken,
                "{password:?}"
            );
        }
    }

    #[test]
    fn secret_id_is_the_head_of_sha256() {
        // SHA-256("01234") starts with c5 65 (see the vectors: "xFZQ").
        assert_eq!(TokenKey::new(SECRET).secret_id(), [0xc5, 0x65]);
    }

    #[test]
    fn debug_does_not_show_the_key_state() {
        let shown = format!("{:?}", TokenKey::new(b"s3cr3t-value"));
        assert!(shown.contains("secret_id"));
        assert!(!shown.contains("s3cr3t"));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".*", now in any::<i64>()) {
            let _ = check(SECRET, "u", "d", &s, now);
        }

        #[test]
        fn token_shaped_text_never_panics(s in "[A-Za-z0-9+/$%=-]{29,34}") {
            let _ = check(SECRET, "u", "d", &s, 0);
        }

        #[test]
        fn make_then_check_round_trips(
            user in ".*",
            domain in ".*",
            expiry in any::<u32>(),
            secret in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let key = TokenKey::new(&secret);
            let token = key.make(&user, &domain, expiry);
            prop_assert_eq!(token.len(), TOKEN_CHARS);
            prop_assert!(!token.contains(['O', 'I', 'l', '=']));
            prop_assert_eq!(
                key.check(&user, &domain, &token, i64::from(expiry) - 1),
                TokenCheck::Valid
            );
            prop_assert_eq!(
                key.check(&user, &domain, &token, i64::from(expiry)),
                TokenCheck::Expired
            );
            let other = format!("{user}x");
            prop_assert_eq!(
                key.check(&other, &domain, &token, i64::from(expiry) - 1),
                TokenCheck::BadMac
            );
        }
    }
}
