//! Result tables: one Markdown table per scenario, one column per server
//! (median of the repeats), then the ratio of the first server to each
//! of the others.

use crate::ServerKind;

/// One table row: a label and a value per server.
#[derive(Debug)]
pub(crate) struct Row {
    label: String,
    values: Vec<f64>,
    decimals: usize,
    /// Counts and diagnostics: no ratio column.
    count: bool,
}

impl Row {
    /// The median of `f` over each server's runs.
    pub(crate) fn median<T>(
        label: &str,
        results: &[(ServerKind, Vec<T>)],
        f: impl Fn(&T) -> f64,
        decimals: usize,
    ) -> Self {
        let values = results
            .iter()
            .map(|(_, runs)| median(runs.iter().map(&f).collect()))
            .collect();
        Row {
            label: label.to_string(),
            values,
            decimals,
            count: false,
        }
    }

    /// Shown without ratios (a diagnostic, not a figure of merit).
    pub(crate) fn no_ratio(mut self) -> Self {
        self.count = true;
        self
    }

    /// The sum of `f` over each server's runs.
    pub(crate) fn sum<T>(
        label: &str,
        results: &[(ServerKind, Vec<T>)],
        f: impl Fn(&T) -> u64,
    ) -> Self {
        let values = results
            .iter()
            .map(|(_, runs)| runs.iter().map(&f).sum::<u64>() as f64)
            .collect();
        Row {
            label: label.to_string(),
            values,
            decimals: 0,
            count: true,
        }
    }
}

/// A table under a title.
#[derive(Debug)]
pub(crate) struct Report {
    title: String,
    columns: Vec<&'static str>,
    rows: Vec<Row>,
}

impl Report {
    pub(crate) fn new(title: &str, columns: &[&'static str]) -> Self {
        Report {
            title: title.to_string(),
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Print as Markdown on stdout.
    pub(crate) fn print(&self) {
        println!("\n### {}\n", self.title);
        if self.columns.is_empty() {
            println!("(no server ran)\n");
            return;
        }
        let mut header = format!("| metric (median) | {} |", self.columns.join(" | "));
        let mut sep = format!("|---|{}", "---:|".repeat(self.columns.len()));
        for other in &self.columns[1..] {
            header.push_str(&format!(" {} / {} |", self.columns[0], other));
            sep.push_str("---:|");
        }
        println!("{header}\n{sep}");
        for r in &self.rows {
            let mut line = format!("| {} |", r.label);
            for v in &r.values {
                line.push_str(&format!(" {} |", fmt(*v, r.decimals)));
            }
            for v in r.values.iter().skip(1) {
                if r.count {
                    line.push_str(" |");
                } else {
                    line.push_str(&format!(" {} |", ratio(r.values[0], *v)));
                }
            }
            println!("{line}");
        }
        println!();
    }
}

fn fmt(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.decimals$}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "–".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// The first server against the second, repeat by repeat (they ran
/// alternately, so each pair shared the machine's state): the median of the
/// ratios of `f`, and in how many repeats the first was lower. Where a ratio of
/// medians sits within a percent of 1, this says whether that is a difference
/// or a coin toss. `None` when their run counts differ (a run failed; runs
/// are paired by their place, so two failures in different repeats would
/// pair runs of different repeats: rare, and said here).
pub(crate) fn paired<T>(results: &[(ServerKind, Vec<T>)], f: impl Fn(&T) -> f64) -> Option<Paired> {
    let [(_, a), (_, b), ..] = results else {
        return None;
    };
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let (a, b): (Vec<f64>, Vec<f64>) = (a.iter().map(&f).collect(), b.iter().map(&f).collect());
    Some(Paired {
        median_ratio: median(a.iter().zip(&b).map(|(x, y)| x / y).collect()),
        lower: a.iter().zip(&b).filter(|(x, y)| x < y).count(),
        higher: a.iter().zip(&b).filter(|(x, y)| x > y).count(),
        n: a.len(),
    })
}

/// See [`paired`].
#[derive(Debug, PartialEq)]
pub(crate) struct Paired {
    pub median_ratio: f64,
    pub lower: usize,
    pub higher: usize,
    pub n: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_odd_even_nan() {
        assert_eq!(super::median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(super::median(vec![f64::NAN]).is_nan());
    }

    #[test]
    fn paired_compares_repeat_by_repeat() {
        use crate::ServerKind::{Bare, Switchboard};
        let runs = vec![
            (Switchboard, vec![70.0, 75.0, 72.0]),
            (Bare, vec![71.0, 74.0, 72.0]),
        ];
        let p = super::paired(&runs, |v| *v).unwrap();
        assert_eq!((p.lower, p.higher, p.n), (1, 1, 3));
        assert_eq!(p.median_ratio, 1.0);
        let short = vec![(Switchboard, vec![1.0, 2.0]), (Bare, vec![1.0])];
        assert_eq!(
            super::paired(&short, |v| *v),
            None,
            "a missing run: no pairs"
        );
    }
}
