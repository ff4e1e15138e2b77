//! This process's totals in the database, and the sum over every process
//! sharing it (`xcauth stats`).
//!
//! ejabberd runs a pool of helpers on standard input; none has a port of
//! its own, so each serving process with a database writes its totals to
//! our `processtotals` table every `stats-interval` ([`WRITE_EVERY`]) and at exit (see
//! `store/totals.rs` for how rows of gone processes are folded and the
//! table kept small). A row's totals are JSON:
//! `{"counters":{SERIES:VALUE,...},"gauges":{SERIES:VALUE,...}}`, where
//! SERIES is a sample as the text format spells it
//! (`xcauth_requests_total{protocol="ejabberd",...}`): counters and
//! histogram samples add up across processes (and into the sum of those
//! gone); gauges (open connections, queue depth) only count while their
//! process runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tracing::{debug, warn};

use crate::store::{ProcessTotals, Store, EXITED};
use crate::sync::lock;

/// How often a serving process writes its totals, by default
/// (`stats-interval`).
pub const WRITE_EVERY: Duration = Duration::from_secs(10);
/// The longest `stats-interval`: well within [`STALE_AFTER`].
pub const MAX_WRITE_EVERY: Duration = Duration::from_secs(30);

/// A process whose row is older than this is taken as gone (killed or
/// crashed before it could fold its own row) and folded by the next
/// writer; `xcauth stats` no longer counts it as live.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// One text encoding, parsed: every sample's value, and which families are
/// gauges (their samples do not add up over time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Sample (name with labels) → value.
    pub series: BTreeMap<String, f64>,
    /// Names of the gauge families.
    pub gauges: BTreeSet<String>,
    /// Family name → (type, help), in the order encoded.
    pub families: Vec<(String, String, String)>,
}

impl Parsed {
    /// Whether the sample `series` belongs to a gauge family.
    pub fn is_gauge(&self, series: &str) -> bool {
        self.gauges.contains(sample_name(series))
    }
}

/// The metric name of a sample: `a_total{x="y"}` → `a_total`.
fn sample_name(series: &str) -> &str {
    series.split('{').next().unwrap_or(series)
}

/// Reads the text format this process writes (OpenMetrics).
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut help = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = rest.split_once(' ') {
                help.insert(name.to_owned(), text.to_owned());
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                if kind == "gauge" {
                    parsed.gauges.insert(name.to_owned());
                }
                let text = help.get(name).cloned().unwrap_or_default();
                parsed
                    .families
                    .push((name.to_owned(), kind.to_owned(), text));
            }
        } else if !line.starts_with('#') {
            // Label values are ours (no spaces), but split at the last
            // space anyway: the value is the last field.
            if let Some((series, value)) = line.rsplit_once(' ') {
                if let Ok(value) = value.parse::<f64>() {
                    parsed.series.insert(series.to_owned(), value);
                }
            }
        }
    }
    parsed
}

/// Counters and gauges of one row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Samples that add up (counters, histogram buckets, sums, counts).
    pub counters: BTreeMap<String, f64>,
    /// Samples that hold a current value.
    pub gauges: BTreeMap<String, f64>,
}

impl Totals {
    /// This process's totals now.
    pub fn now() -> Totals {
        Totals::from_parsed(&parse(&super::metrics().encode()))
    }

    fn from_parsed(parsed: &Parsed) -> Totals {
        let mut totals = Totals::default();
        for (series, value) in &parsed.series {
            let map = if parsed.is_gauge(series) {
                &mut totals.gauges
            } else {
                &mut totals.counters
            };
            map.insert(series.clone(), *value);
        }
        totals
    }

    /// The stored text.
    pub fn to_json(&self) -> String {
        let map = |m: &BTreeMap<String, f64>| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::from(*v)))
                    .collect::<Map<_, _>>(),
            )
        };
        let mut object = Map::new();
        object.insert("counters".into(), map(&self.counters));
        object.insert("gauges".into(), map(&self.gauges));
        Value::Object(object).to_string()
    }

    /// The stored text read back; what does not parse counts as nothing
    /// (a row written by hand or by a newer version in another shape).
    pub fn from_json(text: &str) -> Totals {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let map = |key: &str| -> BTreeMap<String, f64> {
            value
                .get(key)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                        .collect()
                })
                .unwrap_or_default()
        };
        Totals {
            counters: map("counters"),
            gauges: map("gauges"),
        }
    }

    /// Adds `other`'s counters (and, with `gauges`, its gauges).
    pub fn add(&mut self, other: &Totals, gauges: bool) {
        for (k, v) in &other.counters {
            *self.counters.entry(k.clone()).or_default() += v;
        }
        if gauges {
            for (k, v) in &other.gauges {
                *self.gauges.entry(k.clone()).or_default() += v;
            }
        }
    }

    /// `self` less `base`'s counters (gauges kept): what accrued since.
    fn minus(&self, base: &Totals) -> Totals {
        let mut out = self.clone();
        for (k, v) in &base.counters {
            if let Some(mine) = out.counters.get_mut(k) {
                *mine -= v;
            }
        }
        out
    }
}

/// How rows are folded into the sum of the processes gone: counters add
/// up, gauges are dropped.
pub fn fold(exited: Option<&str>, gone: &[&str]) -> String {
    let mut sum = exited.map(Totals::from_json).unwrap_or_default();
    sum.gauges.clear();
    for text in gone {
        sum.add(&Totals::from_json(text), false);
    }
    sum.to_json()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// What a process keeps to write its row.
struct Writer {
    store: Store,
    process: String,
    pid: i64,
    started: i64,
    /// Counters already folded into the sum of the gone (when another
    /// process took this one for gone): the row holds what came after.
    base: Totals,
    /// What the row held after the last write; `None` before the first.
    written: Option<Totals>,
}

impl Writer {
    fn row(&self, totals: &Totals, now: i64) -> ProcessTotals {
        ProcessTotals {
            process: self.process.clone(),
            pid: self.pid,
            started: self.started,
            updated: now,
            totals: totals.to_json(),
        }
    }

    fn write(&mut self) {
        self.write_totals(&Totals::now(), unix_now());
    }

    /// Writes `current` (this process's totals since start) as of `now`.
    fn write_totals(&mut self, current: &Totals, now: i64) {
        let mut row_totals = current.minus(&self.base);
        let row = self.row(&row_totals, now);
        match self
            .store
            .totals_write(&row, now - secs(STALE_AFTER), &fold)
        {
            Ok(true) => self.written = Some(row_totals),
            Ok(false) => {
                if let Some(folded) = self.written.take() {
                    // Another process folded our last row: those counts
                    // are in the sum of the gone; the row just written
                    // counts them again, so it is rewritten without them.
                    warn!("metric totals: this process's row was folded as gone; writing on");
                    self.base.add(&folded, false);
                    row_totals = row_totals.minus(&folded);
                    let row = self.row(&row_totals, now);
                    if let Err(e) = self
                        .store
                        .totals_write(&row, now - secs(STALE_AFTER), &fold)
                    {
                        warn!("metric totals: {e}");
                        return;
                    }
                }
                self.written = Some(row_totals);
            }
            Err(e) => warn!("metric totals: {e}"),
        }
    }

    fn retire(&mut self) {
        self.retire_totals(&Totals::now(), unix_now());
    }

    /// Folds `current` (since start) into the sum of the gone, as of `now`.
    fn retire_totals(&mut self, current: &Totals, now: i64) {
        let totals = current.minus(&self.base);
        let row = self.row(&totals, now);
        if let Err(e) = self.store.totals_retire(&row, &fold) {
            warn!("metric totals at exit: {e}");
        }
    }
}

/// Writes this process's totals while it lives; dropping it writes them a
/// last time, folded into the sum of the processes gone.
pub struct Recorder {
    writer: Arc<Mutex<Option<Writer>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Recorder {
    /// Starts writing to the database at `db` every `interval` (its own
    /// connection; call inside the runtime). `None` when there is no
    /// database there: the totals are not worth creating one.
    pub fn start(db: &Path, interval: Duration) -> Option<Recorder> {
        if db.as_os_str() == ":memory:" || !db.exists() {
            return None;
        }
        let store = match Store::open(db) {
            Ok(store) => store,
            Err(e) => {
                warn!("metric totals: database {}: {e}", db.display());
                return None;
            }
        };
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let pid = std::process::id();
        let writer = Arc::new(Mutex::new(Some(Writer {
            store,
            process: format!("{pid}-{started_ms}"),
            pid: i64::from(pid),
            started: unix_now(),
            base: Totals::default(),
            written: None,
        })));
        let task = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move {
                let mut every = tokio::time::interval(interval);
                loop {
                    every.tick().await;
                    let writer = Arc::clone(&writer);
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Some(w) = lock(&writer).as_mut() {
                            w.write();
                        }
                    })
                    .await;
                }
            }
        });
        debug!("metric totals go to {} every {interval:?}", db.display());
        Some(Recorder {
            writer,
            task: Some(task),
        })
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // Taken out under the lock: a periodic write still running
        // finishes first, and none can follow.
        if let Some(mut writer) = lock(&self.writer).take() {
            writer.retire();
        }
    }
}

/// The sums `xcauth stats` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Processes that wrote within [`STALE_AFTER`].
    pub live: usize,
    /// Their counters and gauges summed.
    pub live_totals: Totals,
    /// Every process ever (live, gone and folded): counters only.
    pub all_totals: Totals,
    /// Earliest start among the rows.
    pub since: Option<i64>,
}

/// Sums the rows as of `now`.
pub fn summarize(rows: &[ProcessTotals], now: i64) -> Summary {
    let mut summary = Summary::default();
    for row in rows {
        let totals = Totals::from_json(&row.totals);
        summary.all_totals.add(&totals, false);
        let live = row.process != EXITED && row.updated >= now - secs(STALE_AFTER);
        if live {
            summary.live += 1;
            summary.live_totals.add(&totals, true);
        }
        summary.since = Some(summary.since.map_or(row.started, |s| s.min(row.started)));
    }
    summary.all_totals.gauges = summary.live_totals.gauges.clone();
    summary
}

/// The summary as a table: one line per sample, live and all-time values
/// (histogram buckets left out; their `_count` and `_sum` are there).
pub fn table(summary: &Summary) -> Vec<String> {
    let mut lines = vec![format!(
        "{} live process{}; \"all\" adds every process since {}",
        summary.live,
        if summary.live == 1 { "" } else { "es" },
        summary
            .since
            .map_or_else(|| "-".to_owned(), crate::store::format_timestamp)
    )];
    let names: BTreeSet<&String> = summary
        .all_totals
        .counters
        .keys()
        .chain(summary.all_totals.gauges.keys())
        .filter(|k| !sample_name(k).ends_with("_bucket"))
        .collect();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(6).max(6);
    lines.push(format!(
        "{:<width$}  {:>12}  {:>12}",
        "SERIES", "LIVE", "ALL"
    ));
    let number = |v: Option<&f64>| match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.3}"),
        None => "0".to_owned(),
    };
    for name in names {
        let (live, all) = match summary.live_totals.gauges.get(name.as_str()) {
            Some(g) => (Some(g), Some(g)),
            None => (
                summary.live_totals.counters.get(name.as_str()),
                summary.all_totals.counters.get(name.as_str()),
            ),
        };
        lines.push(format!(
            "{name:<width$}  {:>12}  {:>12}",
            number(live),
            number(all)
        ));
    }
    lines
}

/// Where a sample goes in its family: by its labels other than `le`, then
/// a histogram's buckets in increasing `le` (as the text format wants
/// them), its `_sum`, its `_count`.
fn order(series: &str) -> (String, u8, f64) {
    let name = sample_name(series);
    let labels = series[name.len()..]
        .trim_start_matches('{')
        .trim_end_matches('}');
    let mut le = f64::NEG_INFINITY;
    let rest: Vec<&str> = labels
        .split(',')
        .filter(|l| match l.strip_prefix("le=\"") {
            Some(v) => {
                let v = v.trim_end_matches('"');
                le = if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().unwrap_or(f64::INFINITY)
                };
                false
            }
            None => true,
        })
        .collect();
    let rank = if name.ends_with("_bucket") {
        0
    } else if name.ends_with("_sum") {
        1
    } else if name.ends_with("_count") {
        2
    } else {
        0
    };
    (rest.join(","), rank, le)
}

/// The all-time sums in the Prometheus text format (for node_exporter's
/// textfile collector): counters over every process, gauges over the
/// live ones. Types and help come from this binary's families.
pub fn prometheus(summary: &Summary) -> Vec<String> {
    let known = parse(&super::metrics().encode());
    let mut lines = Vec::new();
    let samples: BTreeMap<&String, &f64> = summary
        .all_totals
        .counters
        .iter()
        .chain(summary.all_totals.gauges.iter())
        .collect();
    let mut done = BTreeSet::new();
    for (family, kind, help) in &known.families {
        let belongs = |s: &str| {
            let name = sample_name(s);
            name == family
                || name
                    .strip_prefix(family.as_str())
                    .is_some_and(|rest| ["_total", "_bucket", "_sum", "_count"].contains(&rest))
        };
        let mut mine: Vec<(&&String, &&f64)> = samples.iter().filter(|(s, _)| belongs(s)).collect();
        mine.sort_by(|a, b| {
            order(a.0)
                .partial_cmp(&order(b.0))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        if mine.is_empty() {
            continue;
        }
        // The classic text format names a counter by its sample.
        let typed = if kind == "counter" {
            format!("{family}_total")
        } else {
            family.clone()
        };
        lines.push(format!("# HELP {typed} {help}"));
        lines.push(format!("# TYPE {typed} {kind}"));
        for (series, value) in mine {
            lines.push(format!("{series} {value}"));
            done.insert((*series).clone());
        }
    }
    // Samples of families this binary does not know (a newer version's).
    for (series, value) in samples {
        if !done.contains(series) {
            lines.push(format!("{series} {value}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP xcauth_requests Requests.\n\
        # TYPE xcauth_requests counter\n\
        xcauth_requests_total{protocol=\"generic\",request=\"auth\",result=\"success\"} 3\n\
        # HELP xcauth_open_connections Open.\n\
        # TYPE xcauth_open_connections gauge\n\
        xcauth_open_connections{protocol=\"generic\"} 2\n\
        # EOF\n";

    #[test]
    fn text_is_parsed_into_counters_and_gauges() {
        let parsed = parse(TEXT);
        let totals = Totals::from_parsed(&parsed);
        assert_eq!(
            totals.counters
                ["xcauth_requests_total{protocol=\"generic\",request=\"auth\",result=\"success\"}"],
            3.0
        );
        assert_eq!(
            totals.gauges["xcauth_open_connections{protocol=\"generic\"}"],
            2.0
        );
        assert_eq!(Totals::from_json(&totals.to_json()), totals);
        assert_eq!(Totals::from_json("not json"), Totals::default());
    }

    #[test]
    fn gone_processes_keep_their_counters_not_their_gauges() {
        let one = Totals::from_parsed(&parse(TEXT)).to_json();
        let folded = Totals::from_json(&fold(None, &[&one, &one]));
        assert!(folded.gauges.is_empty());
        assert_eq!(folded.counters.values().sum::<f64>(), 6.0);
        let rows = [
            ProcessTotals {
                process: "1-1".into(),
                pid: 1,
                started: 50,
                updated: 1000,
                totals: one.clone(),
            },
            ProcessTotals {
                process: EXITED.into(),
                pid: 0,
                started: 10,
                updated: 900,
                totals: folded.to_json(),
            },
            // Silent for too long: counted in "all", not live.
            ProcessTotals {
                process: "2-2".into(),
                pid: 2,
                started: 20,
                updated: 1000 - secs(STALE_AFTER) - 1,
                totals: one,
            },
        ];
        let s = summarize(&rows, 1000);
        assert_eq!(s.live, 1);
        assert_eq!(s.live_totals.counters.values().sum::<f64>(), 3.0);
        assert_eq!(s.all_totals.counters.values().sum::<f64>(), 12.0);
        assert_eq!(s.all_totals.gauges.values().sum::<f64>(), 2.0);
        assert_eq!(s.since, Some(10));
        let table = table(&s).join("\n");
        assert!(table.starts_with("1 live process;"), "{table}");
        let prom = prometheus(&s).join("\n");
        assert!(
            prom.contains("# TYPE xcauth_requests_total counter\nxcauth_requests_total{"),
            "{prom}"
        );
    }

    fn counted(n: f64) -> Totals {
        let mut t = Totals::default();
        t.counters.insert("c_total".into(), n);
        t
    }

    fn writer(store: Store, process: &str) -> Writer {
        Writer {
            store,
            process: process.into(),
            pid: 1,
            started: 900,
            base: Totals::default(),
            written: None,
        }
    }

    /// A process taken for gone while it was only slow goes on counting
    /// from what was folded: every count is in the sums once.
    #[test]
    fn a_process_folded_while_slow_is_not_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite3");
        let mut slow = writer(Store::open(&path).unwrap(), "1-1");
        let mut other = writer(Store::open(&path).unwrap(), "2-2");
        slow.write_totals(&counted(5.0), 1000);
        // 1000 + STALE_AFTER later the other process folds the slow one.
        let later = 1001 + secs(STALE_AFTER);
        other.write_totals(&counted(1.0), later);
        slow.write_totals(&counted(8.0), later + 1);
        let rows = Store::open(&path).unwrap().totals_all().unwrap();
        assert_eq!(rows.len(), 3, "{rows:?}");
        let s = summarize(&rows, later + 1);
        assert_eq!(s.all_totals.counters["c_total"], 9.0);
        assert_eq!(s.live, 2);
        assert_eq!(s.live_totals.counters["c_total"], 4.0);
        // Its exit folds the rest: still 8 + 1.
        slow.retire_totals(&counted(8.0), later + 2);
        let rows = Store::open(&path).unwrap().totals_all().unwrap();
        let s = summarize(&rows, later + 2);
        assert_eq!(s.all_totals.counters["c_total"], 9.0);
    }

    #[test]
    fn histogram_buckets_are_printed_in_increasing_order() {
        let b = |le: &str, op: &str| format!("h_bucket{{le=\"{le}\",operation=\"{op}\"}}");
        let mut names = vec![
            b("+Inf", "a"),
            "h_count{operation=\"a\"}".to_owned(),
            b("10.0", "a"),
            b("2.5", "a"),
            "h_sum{operation=\"a\"}".to_owned(),
            b("0.5", "b"),
        ];
        names.sort_by(|x, y| order(x).partial_cmp(&order(y)).unwrap());
        assert_eq!(
            names,
            vec![
                b("2.5", "a"),
                b("10.0", "a"),
                b("+Inf", "a"),
                "h_sum{operation=\"a\"}".to_owned(),
                "h_count{operation=\"a\"}".to_owned(),
                b("0.5", "b"),
            ]
        );
    }
}
