//! The stock-Nextcloud reply classifiers: any reply never panics; the
//! password check says "accepted" only for HTTP 200 and "rejected" only
//! for 200 or 401; a provisioning reply is a success only for HTTP 200.
//!
//! Input: which classifier (byte: even = password check, odd =
//! provisioning); status (a byte below 0xC0 means 200, otherwise two more
//! bytes give it, big-endian); `Location` (a length byte, 0 for none, then
//! that many bytes); the body (the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::backend::http::HttpReply;
use xcauth::backend::nextcloud::{classify_api, classify_login};
use xcauth::backend::Verdict;
use xcauth_fuzz::status_and_location;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (status, location, body) = status_and_location(rest);
    let reply = HttpReply {
        status,
        location,
        body: body.to_vec(),
    };
    if which % 2 == 0 {
        match classify_login(&reply, "alice") {
            Ok(Verdict::Accepted) => assert_eq!(status, 200, "accepted from HTTP {status}"),
            Ok(Verdict::Rejected) => {
                assert!(
                    status == 200 || status == 401,
                    "rejected from HTTP {status}"
                )
            }
            Err(_) => {}
        }
    } else if let Ok(value) = classify_api(&reply, "xcauth-api") {
        assert_eq!(status, 200, "success {value} from HTTP {status}");
    }
});
