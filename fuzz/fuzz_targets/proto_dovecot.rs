//! The Dovecot line codec: any bytes in any split never panic or yield an
//! empty user, decode like the whole stream, and every request re-encoded
//! as an escaped TAB-separated line decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::proto::dovecot::{escape, DovecotCodec, MAX_LINE};
use xcauth::proto::{Codec, Request};
use xcauth_fuzz::{CodecCheck, CodecInput};

fuzz_target!(|data: &[u8]| {
    let input = CodecInput::parse(data);
    CodecCheck {
        codec: &|| Box::new(DovecotCodec::default()) as Box<dyn Codec>,
        any_split: true,
        encode: &|request| {
            let line = match request {
                Request::Auth {
                    user,
                    domain,
                    password,
                    service,
                    client,
                } => format!(
                    "auth\t{}\t{}\t{}\t{}\t{}\n",
                    escape(user),
                    escape(domain),
                    escape(password.expose()),
                    escape(service.as_deref().unwrap_or_default()),
                    escape(client.as_deref().unwrap_or_default()),
                ),
                Request::IsUser { user, domain } => {
                    format!("isuser\t{}\t{}\n", escape(user), escape(domain))
                }
                Request::Quit => "quit\n".to_owned(),
                Request::Invalid { .. } => return None,
                other => panic!("Dovecot asks auth and isuser only: {other:?}"),
            };
            // Escaping can make a field twice as long as it came.
            (line.len() <= MAX_LINE).then(|| line.into_bytes())
        },
    }
    .run(&input);
});
