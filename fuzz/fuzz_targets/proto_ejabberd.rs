//! The ejabberd extauth codec: any bytes in any split never panic or yield
//! an empty user, decode like the whole stream, and every request
//! re-encoded as one frame decodes to itself. The option byte is unused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::proto::ejabberd::EjabberdCodec;
use xcauth::proto::{Codec, Request};
use xcauth_fuzz::{command_text, length_prefixed, CodecCheck, CodecInput};

fuzz_target!(|data: &[u8]| {
    let input = CodecInput::parse(data);
    CodecCheck {
        codec: &|| Box::new(EjabberdCodec) as Box<dyn Codec>,
        any_split: true,
        encode: &|request| {
            // ejabberd never yields a roster request (its answer is JSON).
            assert!(!matches!(request, Request::Roster { .. }), "{request:?}");
            length_prefixed(command_text(request)?.as_bytes())
        },
    }
    .run(&input);
});
