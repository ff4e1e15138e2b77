//! `xcauth stats`: the metric totals of every process sharing the database, summed (see `metrics::totals`).

use super::report::{shown, Report};
use super::Context;
use crate::metrics::totals;
use crate::store::StoreError;

/// Prints the sums over the live processes and over all of them, as a
/// table or (`prometheus`) in the Prometheus text format.
pub(super) fn show(cx: &Context<'_>, r: &mut Report, prometheus: bool) -> Result<(), StoreError> {
    let rows = cx.store.totals_all()?;
    let summary = totals::summarize(&rows, cx.now);
    let lines = if prometheus {
        totals::prometheus(&summary)
    } else {
        totals::table(&summary)
    };
    // A hand-written row could hold anything: control characters are
    // shown escaped.
    for line in lines {
        r.line(shown(&line));
    }
    if rows.is_empty() {
        r.note(
            "no totals in this database yet: serving processes with this database write \
             theirs every stats-interval (10s) and at exit",
        );
    }
    Ok(())
}
