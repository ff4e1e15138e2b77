//! The JSXC external API's reply classifier: any reply never panics, an
//! answer only ever comes from HTTP 200 and fits the operation, and an
//! error never quotes the password.
//!
//! Input: operation (byte modulo 3: auth, isuser, sharedroster); status
//! (a byte below 0xC0 means 200, otherwise two more bytes give it,
//! big-endian); `Location` (a length byte, 0 for none, then that many
//! bytes); the body (the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::backend::jsxc::{classify, Answer, Operation};
use xcauth::secret::Secret;
use xcauth_fuzz::status_and_location;

/// Long and odd enough that no error text holds it by chance; without
/// white space, since error texts blank control characters to spaces (a
/// reply holding it with a control character for a space would show it).
const PASSWORD: &str = "pw-7Zq!x9_correct_horse";

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    let (status, location, body) = status_and_location(rest);
    let operation = match op % 3 {
        0 => Operation::Auth(Secret::new(PASSWORD)),
        1 => Operation::IsUser,
        _ => Operation::SharedRoster,
    };
    match classify(&operation, status, location.as_deref(), body) {
        Ok(answer) => {
            assert_eq!(status, 200, "answer {answer:?} from HTTP {status}");
            let fits = matches!(
                (&operation, &answer),
                (Operation::Auth(_), Answer::Auth(_))
                    | (Operation::IsUser, Answer::IsUser(_))
                    | (Operation::SharedRoster, Answer::Roster(_))
            );
            assert!(fits, "{answer:?} for {}", operation.name());
        }
        Err(error) => {
            let text = format!("{error} {error:?}");
            // The server's own `msg` may be quoted: only a password the
            // reply does not hold must never show.
            let quoted = body
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes())
                || location.as_deref().is_some_and(|l| l.contains(PASSWORD));
            assert!(quoted || !text.contains(PASSWORD), "{text}");
        }
    }
});
