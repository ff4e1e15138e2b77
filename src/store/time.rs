//! Timestamps as the original stores them: UTC text `YYYY-MM-DD HH:MM:SS[.ffffff]`, and the proleptic Gregorian calendar behind it.
//!
//! Python's sqlite3 adapter writes a datetime without microseconds as
//! `YYYY-MM-DD HH:MM:SS`, and `CURRENT_TIMESTAMP` gives the same; this
//! module writes that form and reads both it and the `.ffffff` form. The
//! calendar arithmetic is done here on plain integers rather than through a
//! date crate, so that exactly the years Python can hold are accepted.

const SECS_PER_DAY: i64 = 86_400;
/// 0001-01-01 00:00:00, the earliest time Python's datetime can hold.
const MIN_TIMESTAMP: i64 = -62_135_596_800;
/// 9999-12-31 23:59:59, the latest time Python's datetime can hold.
const MAX_TIMESTAMP: i64 = 253_402_300_799;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: count in 400-year eras starting on March 1st, so the
/// leap day is the last day of the year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Seconds since the epoch as the text this module writes,
/// `YYYY-MM-DD HH:MM:SS` UTC. Clamped to the years 1..=9999 so that Python
/// can always read it back.
pub fn format_timestamp(secs: i64) -> String {
    let secs = secs.clamp(MIN_TIMESTAMP, MAX_TIMESTAMP);
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let in_day = secs.rem_euclid(SECS_PER_DAY);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60
    )
}

/// Parses a stored timestamp into seconds since the epoch: `YYYY-MM-DD`,
/// then optionally a space or `T`, `HH:MM`, `:SS`, `.fraction` (dropped,
/// rounding down), and a zone `Z` or `±HH:MM` (without one, UTC). `None`
/// for anything else, including impossible dates.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let s = text.trim().as_bytes();
    let year = number(s, 0, 4)?;
    let month = number(s, 5, 2)?;
    let day = number(s, 8, 2)?;
    if s.get(4) != Some(&b'-') || s.get(7) != Some(&b'-') {
        return None;
    }
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut pos = 10;
    if matches!(s.get(pos), Some(b' ' | b'T' | b't')) {
        hour = number(s, pos + 1, 2)?;
        if s.get(pos + 3) != Some(&b':') {
            return None;
        }
        minute = number(s, pos + 4, 2)?;
        pos += 6;
        if s.get(pos) == Some(&b':') {
            second = number(s, pos + 1, 2)?;
            pos += 3;
            if s.get(pos) == Some(&b'.') {
                pos += 1;
                let digits = s[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                pos += digits;
            }
        }
    }
    let offset = match &s[pos..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let zone = [*h1, *h2, *m1, *m2];
            let hours = number(&zone, 0, 2)?;
            let minutes = number(&zone, 2, 2)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(
        days_from_civil(year, month, day) * SECS_PER_DAY + hour * 3600 + minute * 60 + second
            - offset,
    )
}

/// The decimal number in `s[start..start + len]`, all digits.
fn number(s: &[u8], start: usize, len: usize) -> Option<i64> {
    let digits = s.get(start..start + len)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_and_parse() {
        let cases = [
            (0, "1970-01-01 00:00:00"),
            (-1, "1969-12-31 23:59:59"),
            (951_825_600, "2000-02-29 12:00:00"),
            (1_795_879_448, "2026-11-28 15:24:08"),
            (2_147_483_647, "2038-01-19 03:14:07"),
            (2_147_483_648, "2038-01-19 03:14:08"),
            (4_107_542_400, "2100-03-01 00:00:00"),
            (MIN_TIMESTAMP, "0001-01-01 00:00:00"),
            (MAX_TIMESTAMP, "9999-12-31 23:59:59"),
        ];
        for (secs, text) in cases {
            assert_eq!(format_timestamp(secs), text, "format {secs}");
            assert_eq!(parse_timestamp(text), Some(secs), "parse {text}");
        }
    }

    #[test]
    fn every_day_over_four_centuries_round_trips() {
        // 1900 (not leap) .. 2400 (leap): covers every leap-year rule.
        let first = days_from_civil(1900, 1, 1);
        let last = days_from_civil(2401, 1, 1);
        let mut expected = (1900, 1, 1);
        for days in first..last {
            assert_eq!(civil_from_days(days), expected);
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let (y, m, d) = expected;
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(expected, (2401, 1, 1));
    }

    #[test]
    fn leap_days() {
        assert!(parse_timestamp("2024-02-29 00:00:00").is_some());
        assert!(parse_timestamp("2000-02-29 00:00:00").is_some());
        assert_eq!(parse_timestamp("2100-02-29 00:00:00"), None);
        assert_eq!(parse_timestamp("2023-02-29 00:00:00"), None);
        assert_eq!(
            parse_timestamp("2024-03-01 00:00:00"),
            parse_timestamp("2024-02-29 00:00:00").map(|t| t + SECS_PER_DAY)
        );
    }

    #[test]
    fn accepted_variants() {
        let base = 1_795_879_442; // 2026-11-28 15:24:02
        for text in [
            "2026-11-28 15:24:02",
            "2026-11-28 15:24:02.016053",
            "2026-11-28 15:24:02.999999",
            "2026-11-28 15:24:02.5",
            "2026-11-28T15:24:02",
            "2026-11-28T15:24:02.016053Z",
            "2026-11-28 15:24:02+00:00",
            "2026-11-28 16:24:02+01:00",
            "2026-11-28 14:54:02-00:30",
            "  2026-11-28 15:24:02\n",
        ] {
            assert_eq!(parse_timestamp(text), Some(base), "{text:?}");
        }
        assert_eq!(parse_timestamp("2026-11-28 15:24"), Some(base - 2));
        assert_eq!(
            parse_timestamp("2026-11-28"),
            Some(base - 15 * 3600 - 24 * 60 - 2)
        );
        // A fraction before 1970 still rounds down.
        assert_eq!(parse_timestamp("1969-12-31 23:59:59.5"), Some(-1));
    }

    #[test]
    fn rejected_texts() {
        for text in [
            "",
            "yesterday",
            "2026-11-28 15:24:02.",
            "2026-11-28 15:24:60",
            "2026-11-28 24:00:00",
            "2026-11-28 15:60:00",
            "2026-13-01 00:00:00",
            "2026-00-01 00:00:00",
            "2026-04-31 00:00:00",
            "2026-11-00 00:00:00",
            "2026-11-28 15:24:02 junk",
            "2026-11-28 15:24:02+1",
            "2026-11-28x15:24:02",
            "26-11-28 15:24:02",
            "2026/11/28 15:24:02",
            "+026-11-28 15:24:02",
            "2026-11-28 1:24:02",
            "2026-11-28 15:24:02ü",
            "１２３４-11-28",
        ] {
            assert_eq!(parse_timestamp(text), None, "{text:?}");
        }
    }

    #[test]
    fn format_clamps_to_what_python_reads() {
        assert_eq!(format_timestamp(i64::MIN), "0001-01-01 00:00:00");
        assert_eq!(format_timestamp(i64::MAX), "9999-12-31 23:59:59");
    }
}
