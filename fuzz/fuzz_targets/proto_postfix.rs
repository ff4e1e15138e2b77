//! The Postfix `tcp_table` codec, with recipient delimiter "", "+" or "+-"
//! (option byte modulo 3): any bytes in any split never panic or yield an
//! empty user, decode like the whole stream, and every request re-encoded
//! as a `get` line (key %XX-encoded as Postfix does) decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::proto::postfix::{encode_text, PostfixCodec, MAX_LINE};
use xcauth::proto::{Codec, Request};
use xcauth_fuzz::{CodecCheck, CodecInput};

fuzz_target!(|data: &[u8]| {
    let input = CodecInput::parse(data);
    let delimiter = ["", "+", "+-"][usize::from(input.option % 3)];
    CodecCheck {
        codec: &|| Box::new(PostfixCodec::new(delimiter.to_owned())) as Box<dyn Codec>,
        any_split: true,
        encode: &|request| {
            let line = match request {
                Request::IsUser { user, domain } => {
                    format!("get {}\n", encode_text(&format!("{user}@{domain}")))
                }
                Request::Quit => "quit\n".to_owned(),
                Request::Invalid { .. } => return None,
                other => panic!("Postfix only asks isuser: {other:?}"),
            };
            // Escaping can make a raw key three times longer than it came.
            (line.len() <= MAX_LINE).then(|| line.into_bytes())
        },
    }
    .run(&input);
});
