//! The generic (Prosody) line codec: any bytes in any split never panic or
//! yield an empty user, decode like the whole stream, and every request
//! re-encoded as a line decodes to itself. Option bit 0: end re-encoded
//! lines with `\r\n` instead of `\n`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::proto::generic::GenericCodec;
use xcauth::proto::Codec;
use xcauth_fuzz::{command_text, CodecCheck, CodecInput};

fuzz_target!(|data: &[u8]| {
    let input = CodecInput::parse(data);
    let crlf = input.option & 1 == 1;
    CodecCheck {
        codec: &|| Box::new(GenericCodec::default()) as Box<dyn Codec>,
        any_split: true,
        encode: &|request| {
            let mut line = command_text(request)?.into_bytes();
            // One trailing `\r` is taken as part of the line ending, so a
            // field ending in `\r` needs one more.
            if crlf || line.last() == Some(&b'\r') {
                line.push(b'\r');
            }
            line.push(b'\n');
            Some(line)
        },
    }
    .run(&input);
});
