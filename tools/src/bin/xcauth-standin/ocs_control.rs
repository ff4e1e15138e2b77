//! The control endpoints of the OCS side (stats, throttle, policy), beside the JSXC ones.

use std::time::Duration;

use crate::api::Reply;
use crate::state::State;
use crate::throttle;
use crate::{text, to_response, HttpResponse};

/// Reads a throttle scale: a finite factor from 0 to 1000.
pub fn parse_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(scale) if scale.is_finite() && (0.0..=1000.0).contains(&scale) => Ok(scale),
        _ => Err(format!("{text:?}: a number from 0 to 1000")),
    }
}

/// The JSXC counters with the OCS ones beside them.
pub fn stats_json(state: &State) -> String {
    let mut stats: serde_json::Value =
        serde_json::from_str(&state.stats_json()).unwrap_or_else(|_| serde_json::json!({}));
    let ocs = state.ocs().stats_json();
    let total = stats["requests"].as_u64().unwrap_or(0) + ocs["requests"].as_u64().unwrap_or(0);
    if let Some(object) = stats.as_object_mut() {
        object.insert("ocs".to_owned(), ocs);
        object.insert("nextcloud_requests".to_owned(), total.into());
    }
    stats.to_string()
}

/// The control endpoints of the OCS side (throttle and policy).
pub fn respond(state: &State, post: bool, path: &str, body: &str) -> HttpResponse {
    let ocs = state.ocs();
    let throttle = ocs.throttle();
    match (post, path) {
        (false, "/_standin/bruteforce") => {
            let allowlist: Vec<String> = throttle
                .allowlist()
                .iter()
                .map(ToString::to_string)
                .collect();
            let summary = serde_json::json!({
                "scale": throttle.scale(),
                "allowlist": allowlist,
                "buckets": throttle.summary(),
                "token_auth_enforced": ocs.token_auth_enforced(),
            });
            to_response(Reply::json(200, summary.to_string()))
        }
        (true, "/_standin/bruteforce/reset") => {
            let ip = if body.is_empty() {
                None
            } else {
                match body.parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        return text(400, "reset: an IP address, or nothing for all\n".to_owned())
                    }
                }
            };
            let cleared = throttle.reset(ip);
            tracing::info!("brute-force reset: {cleared} failures cleared");
            text(200, format!("{cleared}\n"))
        }
        (true, "/_standin/bruteforce/allowlist") => {
            let parsed: Result<Vec<throttle::Subnet>, String> = body
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(throttle::Subnet::parse)
                .collect();
            match parsed {
                Ok(list) => {
                    let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
                    throttle.set_allowlist(list);
                    text(200, format!("{}\n", shown.join(",")))
                }
                Err(err) => text(400, format!("allowlist: {err}\n")),
            }
        }
        (true, "/_standin/throttle-scale") => match parse_scale(body) {
            Ok(scale) => {
                throttle.set_scale(scale);
                text(200, format!("{scale}\n"))
            }
            Err(err) => text(400, format!("throttle-scale: {err}\n")),
        },
        (true, "/_standin/clock") => match body.parse::<u64>() {
            Ok(seconds) => {
                throttle.advance_clock(Duration::from_secs(seconds));
                text(200, format!("{seconds}\n"))
            }
            Err(_) => text(400, "clock: whole seconds to move forward\n".to_owned()),
        },
        (true, "/_standin/token-auth-enforced") => match body {
            "true" | "false" => {
                ocs.set_token_auth_enforced(body == "true");
                text(200, format!("{body}\n"))
            }
            _ => text(400, "token-auth-enforced: true or false\n".to_owned()),
        },
        _ => text(404, "no such control endpoint\n".to_owned()),
    }
}
