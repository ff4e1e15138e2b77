#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/TARGET/ (run from anywhere).

Seeds are real request bytes, config files and back-end reply bodies,
each behind the small header its target expects (see fuzz/src/lib.rs and
the targets' doc comments). The fuzzer's own finds are not kept here:
scripts/fuzz runs with a scratch corpus.
"""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def codec(option, stream, cuts=()):
    """Header: option byte, cut count, cuts (u16 big-endian); then stream."""
    head = bytes([option, len(cuts)]) + b"".join(struct.pack(">H", c) for c in cuts)
    return head + stream


def frame(text):
    return struct.pack(">H", len(text)) + text


# ---- generic (Prosody mod_auth_external) ----
generic = {
    "auth": b"auth:alice:example.org:alice-pw\n",
    "session": b"isuser:alice:example.org\nauth:alice:example.org:p:w\r\nroster:alice:example.org\nquit\n",
    "refused": b"setpass:alice:example.org:x\nauth::example.org:pw\nisuser:a\n\xc3(\nexit\n",
    "last-line-no-newline": b"isuser:bob:example.org\nauth:bob:example.org:pw\r\r",
}
for name, stream in generic.items():
    write("proto_generic", name, codec(0, stream))
write("proto_generic", "split", codec(1, generic["session"], cuts=(3, 30, 31, 60)))

# ---- ejabberd extauth ----
ejabberd = {
    "auth": frame(b"auth:alice:example.org:alice-pw"),
    "session": frame(b"isuser:alice:example.org")
    + frame(b"auth:alice:example.org:a:b\nc")
    + frame(b"tryregister:x:example.org:pw")
    + frame(b"roster:alice:example.org")
    + b"\x00\x00"
    + frame(b"isuser:after:end"),
    "partial": frame(b"auth:alice:example.org:pw")[:-3],
}
for name, stream in ejabberd.items():
    write("proto_ejabberd", name, codec(0, stream))
write("proto_ejabberd", "split", codec(0, ejabberd["session"], cuts=(1, 2, 27)))


# ---- saslauthd (option % 3: auto, four, five) ----
def sasl(*fields):
    return b"".join(frame(f) for f in fields)


four = sasl(b"alice", b"alice-pw", b"smtp", b"example.org")
at_login = sasl(b"alice@example.org", b"alice-pw", b"imap", b"")
five = sasl(b"alice", b"alice-pw", b"smtp", b"example.org", b"192.0.2.7;51234")
five_v6 = sasl(b"bob@example.org", b"pw", b"imap", b"", b"2001:db8::7;993")
too_long = struct.pack(">H", 300) + b"x" * 300 + sasl(b"pw", b"smtp", b"example.org")
write("proto_saslauthd", "auto-four", codec(0, four + at_login))
write("proto_saslauthd", "auto-five", codec(0, five + five_v6))
write("proto_saslauthd", "four", codec(1, four + at_login, cuts=(5, 40)))
write("proto_saslauthd", "five", codec(2, five + five_v6, cuts=(70,)))
write("proto_saslauthd", "too-long-field", codec(1, too_long + four))
write("proto_saslauthd", "empty-password", codec(0, sasl(b"alice", b"", b"smtp", b"example.org")))

# ---- Postfix tcp_table (option % 3: delimiter "", "+", "+-") ----
postfix = {
    "get": b"get alice@example.org\n",
    "session": b"get alice+lists@example.org\nget j%C3%BCrgen@ex%c3%a4mple.org\r\nput x y\nget nobody\nquit\n",
    "bad-escape": b"get a%4@example.org\nget a%20b@example.org\nget \n",
}
for name, stream in postfix.items():
    write("proto_postfix", name, codec(0, stream))
write("proto_postfix", "delimiter", codec(1, postfix["session"], cuts=(10, 11)))

# ---- Dovecot (xcauth's Lua passdb and userdb) ----
dovecot = {
    "auth": b"auth\talice\texample.org\talice-pw\timap\t192.0.2.7\n",
    "session": b"isuser\tnina\tnc.example.org\nauth\tcarol\texample.org\tp\\tw\\n\\\\x\tsmtp\t2001:db8::1\r\n"
    b"auth\ta@b\tc\tpw\t\t\nquit\n",
    "refused": b"auth\talice\td\tp\\q\timap\t\nauth\talice\td\tpw\timap\tnot-ip\nisuser\t\td\nsetpass\n\xc3(\n",
}
for name, stream in dovecot.items():
    write("proto_dovecot", name, codec(0, stream))
write("proto_dovecot", "split", codec(0, dovecot["session"], cuts=(5, 40, 41, 70)))

# ---- config files ----
configs = {
    "ejabberd.conf": b"# xcauth.conf\ntype=ejabberd\nurl=https://cloud.example.org/index.php/apps/ojsxc/ajax/externalApi.php\n"
    b"secret-file=/etc/xcauth.secret\ntimeout=5,10\ncache-storage=db\ncache-unreachable-ttl=1w\n",
    "original.conf": b"[xcauth]\n--type: generic\n--url https://cloud.example.org/\n; comment\n"
    b"log=/var/log/xcauth # trailing comment\ndebug\n---\n",
    "nextcloud.conf": b"type=saslauthd\nbackend=nextcloud\nurl=https://cloud.example.org/\napi-user=xcauth\n"
    b"api_password_file=/etc/xcauth.api\nlisten=unix:/run/xcauth/saslauthd.sock\n",
    "bad.conf": b"type=generic\nno-such-option=1\nurl=https://x/\n",
    "repeated.conf": b"type=generic\ntype=ejabberd\ntimeout=\n",
}
for name, text in configs.items():
    write("config_file", name, text)

# ---- JSXC replies: op byte (auth, isuser, sharedroster), status byte
# (< 0xC0: 200; else two status bytes follow), Location length, body ----
def reply(op, body, status=200, location=b""):
    head = bytes([op]) + (b"\x00" if status == 200 else b"\xc0" + struct.pack(">H", status))
    return head + bytes([len(location)]) + location + body


roster = (
    '{"result":"success","data":{"sharedRoster":{"alice":{"name":"Alice Example",'
    '"groups":["staff","Ünïcode Group"]},"bob":{"name":"Bob Example","groups":["staff"]}}}}'
).encode()
jsxc = {
    "auth-success": reply(0, b'{"result":"success","data":{"uid":"alice"}}'),
    "auth-noauth": reply(0, b'{"result":"noauth"}'),
    "isuser-true": reply(1, b'{"result":"success","data":{"isUser":true}}'),
    "isuser-string": reply(1, b'{"result":"success","data":{"isUser":"0"}}'),
    "roster": reply(2, roster),
    "roster-empty": reply(2, b'{"result":"success","data":{"sharedRoster":[]}}'),
    "roster-gaps": reply(2, b'{"result":"success","data":{"sharedRoster":{"c":{"name":null,"groups":{"0":"a","2":"b"}}}}}'),
    "error-500": reply(0, b'{"result":"error","data":{"msg":"Signature not valid"}}', status=500),
    "redirect": reply(1, b"", status=302, location=b"https://cloud.example.org/login"),
    "html": reply(1, b"<!DOCTYPE html><html><body>Nextcloud</body></html>"),
}
for name, data in jsxc.items():
    write("jsxc_classify", name, data)

# ---- Nextcloud OCS replies: first byte even = password check, odd =
# provisioning; then as above ----
ok_user = (
    b'{"ocs":{"meta":{"status":"ok","statuscode":200,"message":"OK"},"data":{"id":"alice",'
    b'"displayname":"Alice Example","email":"alice@example.org","groups":["staff"],"enabled":true}}}'
)
unauthorised = b"<ocs><meta><status>failure</status><statuscode>997</statuscode><message>Unauthorised</message></meta><data/></ocs>"
nextcloud = {
    "login-ok": reply(0, ok_user),
    "login-401": reply(0, unauthorised, status=401),
    "login-other-account": reply(0, ok_user.replace(b'"alice"', b'"alice.other"')),
    "login-412": reply(0, b"", status=412),
    "api-user": reply(1, ok_user),
    "api-v1-not-found": reply(1, b'{"ocs":{"meta":{"status":"failure","statuscode":404,"message":"User does not exist"},"data":[]}}'),
    "api-404": reply(1, b'{"ocs":{"meta":{"status":"failure","statuscode":404,"message":"User does not exist"},"data":[]}}', status=404),
    "api-998": reply(1, b'{"ocs":{"meta":{"status":"failure","statuscode":998,"message":""},"data":[]}}', status=404),
    "api-v1-ok": reply(1, b'{"ocs":{"meta":{"status":"ok","statuscode":100,"message":"OK"},"data":{"users":{"alice":{"displayname":"Alice","enabled":true,"groups":["staff"]}}}}}'),
    "api-429": reply(1, b"", status=429),
}
for name, data in nextcloud.items():
    write("nextcloud_classify", name, data)

# ---- roster names: arbitrary's layout of three strings is not worth
# spelling out; plain text seeds still steer it towards real names ----
for i, text in enumerate(["Team @ Home ☃!", "Ärzte-Team (Süd) €½ „x“", "a\tb\u200bc\u200ed", "bob@other.net", "Zoë Smith"]):
    write("roster_names", "name-%d" % i, text.encode())

print("seeds written to", CORPUS)
