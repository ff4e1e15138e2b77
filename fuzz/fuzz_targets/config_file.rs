//! The strict `key=value` config file reader: any bytes never panic; a
//! refusal is a `File` error naming a line that exists, and the lines
//! before it are accepted on their own (the first bad line is the one
//! named); accepted text stays accepted with a comment line appended.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xcauth::config::{parse_config_text, ConfigError};

fuzz_target!(|text: &[u8]| {
    let lines = text.split(|&b| b == b'\n').count();
    match parse_config_text(text) {
        Ok(warnings) => {
            let mut more = text.to_vec();
            more.extend_from_slice(b"\n# comment\n");
            let again = parse_config_text(&more).expect("a comment line refused");
            assert_eq!(again.len(), warnings.len());
        }
        Err(ConfigError::File { line, .. }) => {
            assert!((1..=lines).contains(&line), "line {line} of {lines}");
            let before: Vec<&[u8]> = text.split(|&b| b == b'\n').take(line - 1).collect();
            if let Err(e) = parse_config_text(&before.join(&b'\n')) {
                panic!("line {line} named, but an earlier line is refused: {e}");
            }
        }
        Err(other) => panic!("not a line error: {other}"),
    }
});
