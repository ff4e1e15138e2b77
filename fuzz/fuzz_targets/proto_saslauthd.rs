//! The saslauthd codec with four, five or auto-detected fields (option
//! byte modulo 3: auto, four, five): any bytes never panic or yield an
//! empty user; with a fixed field count any split decodes like the whole
//! stream, with auto framing any split between whole requests does (auto
//! framing looks at what has arrived, see its module doc); every request
//! re-encoded with its domain in REALM decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::proto::saslauthd::SaslauthdCodec;
use xcauth::proto::{Codec, Request, SaslauthdFields};
use xcauth_fuzz::{length_prefixed, CodecCheck, CodecInput};

fuzz_target!(|data: &[u8]| {
    let input = CodecInput::parse(data);
    let fields = match input.option % 3 {
        0 => SaslauthdFields::Auto,
        1 => SaslauthdFields::Four,
        _ => SaslauthdFields::Five,
    };
    CodecCheck {
        codec: &|| Box::new(SaslauthdCodec::new(fields)) as Box<dyn Codec>,
        any_split: fields != SaslauthdFields::Auto,
        encode: &|request| {
            let Request::Auth {
                user,
                domain,
                password,
                service,
                client,
            } = request
            else {
                // A saslauthd request is always a login (or refused).
                assert!(matches!(request, Request::Invalid { .. }), "{request:?}");
                return None;
            };
            let service = service.as_deref().unwrap_or_default();
            let mut parts = vec![user.as_str(), password.expose(), service, domain.as_str()];
            if fields == SaslauthdFields::Five || client.is_some() {
                parts.push(client.as_deref().unwrap_or_default());
            }
            let mut out = Vec::new();
            for field in parts {
                out.extend(length_prefixed(field.as_bytes())?);
            }
            Some(out)
        },
    }
    .run(&input);
});
