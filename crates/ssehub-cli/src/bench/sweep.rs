//! `ssehub bench --sweep`: the same scenario at several publish rates against one
//! server, so that the whole curve of CPU per delivery and latency is seen at once; the
//! point where the server stops keeping up (its saturation); the series of several
//! servers gathered in one file, as a table and a plot.
//!
//! Each step is a whole run (subscribers connect, publish, drain): a step cannot inherit
//! another's backlog. A fixed rate publishes for `--sweep-seconds` (at most `--messages`
//! events); `max` publishes `--messages` events as fast as the publishers go.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::report::Report;
use super::Args;
use crate::hub_client::Target;

/// A step is saturated when the publishers reached less than this share of its rate.
const KEPT_UP: f64 = 0.9;

/// One step of a sweep: what was asked and what one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Step {
    /// Events per second asked (`None`: as fast as possible).
    pub asked: Option<f64>,
    /// Events per second the publishers reached.
    pub reached: f64,
    pub deliveries_per_second: f64,
    pub cpu_us_per_delivery: Option<f64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub lost: u64,
}

impl Step {
    fn of(asked: Option<f64>, report: &Report) -> Step {
        Step {
            asked,
            reached: report.publish_rate,
            deliveries_per_second: report.deliveries_per_second,
            cpu_us_per_delivery: report.server_cpu_us_per_delivery,
            p50_us: report.latency_us.as_ref().map(|l| l.p50),
            p99_us: report.latency_us.as_ref().map(|l| l.p99),
            // Against the plan, not the server's count: a server that notices a closed
            // stream only when it writes to it (the floor) counts the previous step's
            // subscribers in its first answers.
            lost: report
                .planned_deliveries
                .saturating_sub(report.received_deliveries),
        }
    }

    fn kept_up(&self) -> bool {
        self.asked.is_some_and(|a| self.reached >= KEPT_UP * a)
    }
}

/// The sweep of one server: its label and its steps, in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Series {
    pub label: String,
    pub subscribers: usize,
    pub steps: Vec<Step>,
}

/// Where the server stopped keeping up: the first asked rate it did not reach, and the
/// highest rate it sustained (the `max` step's, or the best of the fixed ones).
#[derive(Debug, PartialEq)]
pub(super) struct Saturation {
    pub first_missed: Option<f64>,
    pub events_per_second: f64,
    pub deliveries_per_second: f64,
}

impl Series {
    pub(super) fn saturation(&self) -> Option<Saturation> {
        let best = self
            .steps
            .iter()
            .max_by(|a, b| a.reached.total_cmp(&b.reached))?;
        Some(Saturation {
            first_missed: self
                .steps
                .iter()
                .find(|s| s.asked.is_some() && !s.kept_up())
                .and_then(|s| s.asked),
            events_per_second: best.reached,
            deliveries_per_second: best.deliveries_per_second,
        })
    }
}

/// The rates of `--sweep`: numbers, or `max`.
pub(super) fn parse_rates(list: &[String]) -> anyhow::Result<Vec<Option<f64>>> {
    list.iter()
        .map(|r| match r.trim() {
            "max" => Ok(None),
            n => match n.parse::<f64>() {
                Ok(v) if v > 0.0 && v.is_finite() => Ok(Some(v)),
                _ => bail!("--sweep: {r:?} is neither a positive rate nor `max`"),
            },
        })
        .collect()
}

/// Run the sweep against one server, print its table and saturation, add its series to
/// `--sweep-out` and draw every series of that file to `--plot`.
pub(super) async fn run(args: &Args, target: &Target, pids: &[u32]) -> anyhow::Result<()> {
    let rates = parse_rates(&args.sweep)?;
    let label = args.label.clone().unwrap_or_else(|| args.url.clone());
    let mut series = Series {
        label,
        subscribers: args.subscribers,
        steps: Vec::new(),
    };
    for asked in rates {
        let mut step_args = args.clone();
        step_args.rate = asked;
        if let Some(rate) = asked {
            let planned = (rate * args.sweep_seconds).ceil() as u64;
            step_args.messages = planned.clamp(1, args.messages);
        }
        eprintln!(
            "sweep {}: {} events at {}",
            series.label,
            step_args.messages,
            asked.map_or("max".into(), |r| format!("{r} msg/s"))
        );
        let report = super::bench(&step_args, target, pids).await?;
        let step = Step::of(asked, &report);
        if step.lost > 0 && report.dropped_events == 0 && report.slow_consumer_closes == 0 {
            bail!(
                "{} deliveries lost although the server reports no overflow",
                step.lost
            );
        }
        series.steps.push(step);
    }
    print!("{}", table(std::slice::from_ref(&series)));
    if let Some(s) = series.saturation() {
        println!(
            "saturation of {}: {:.0} events/s ({:.2} M deliveries/s){}",
            series.label,
            s.events_per_second,
            s.deliveries_per_second / 1e6,
            s.first_missed
                .map(|r| format!("; first rate not kept up: {r} msg/s"))
                .unwrap_or_else(|| "; every fixed rate kept up".into()),
        );
    }
    if let Some(out) = &args.sweep_out {
        let all = append(out, series)?;
        if let Some(plot) = &args.plot {
            std::fs::write(plot, svg(&all))
                .with_context(|| format!("writing --plot {}", plot.display()))?;
            println!("{}", table(&all));
            eprintln!("plot of {} series: {}", all.len(), plot.display());
        }
    }
    Ok(())
}

/// Add `series` to the file (replacing one of the same label), and return them all.
fn append(path: &Path, series: Series) -> anyhow::Result<Vec<Series>> {
    let mut all: Vec<Series> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("--sweep-out {} is not a sweep file", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    all.retain(|s| s.label != series.label);
    all.push(series);
    std::fs::write(path, serde_json::to_vec_pretty(&all)?)
        .with_context(|| format!("writing --sweep-out {}", path.display()))?;
    Ok(all)
}

fn rate_name(asked: Option<f64>) -> String {
    asked.map_or("max".into(), |r| format!("{r}"))
}

/// A Markdown table: a row per asked rate, per series the reached rate, CPU per delivery
/// and p99.
pub(super) fn table(all: &[Series]) -> String {
    let mut out = String::from("| asked msg/s |");
    let mut rule = String::from("| --- |");
    for s in all {
        let _ = write!(out, " {0} msg/s | {0} µs/delivery | {0} p99 ms |", s.label);
        rule.push_str(" --- | --- | --- |");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for asked in asked_rates(all) {
        let _ = write!(out, "| {} |", rate_name(asked));
        for s in all {
            match s.steps.iter().find(|st| st.asked == asked) {
                Some(st) => {
                    let _ = write!(
                        out,
                        " {:.0} | {} | {} |",
                        st.reached,
                        st.cpu_us_per_delivery
                            .map_or("-".into(), |c| format!("{c:.3}")),
                        st.p99_us
                            .map_or("-".into(), |p| format!("{:.2}", p as f64 / 1e3)),
                    );
                }
                None => out.push_str(" - | - | - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// Every asked rate of the series, in the first series' order, then any others.
fn asked_rates(all: &[Series]) -> Vec<Option<f64>> {
    let mut rates: Vec<Option<f64>> = Vec::new();
    for st in all.iter().flat_map(|s| &s.steps) {
        if !rates.contains(&st.asked) {
            rates.push(st.asked);
        }
    }
    rates
}

/// One figure of a step, as a plot reads it.
type Figure = fn(&Step) -> Option<f64>;

/// Two panels side by side, CPU per delivery and p99 latency against the asked rate
/// (evenly spaced, as asked; both y axes logarithmic), a line per series.
pub(super) fn svg(all: &[Series]) -> String {
    const COLOURS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let rates = asked_rates(all);
    let (w, h, pad) = (420.0, 300.0, 50.0);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" \
         fill=\"white\"/>\n",
        2.0 * w,
        h + 20.0 * all.len() as f64 + 10.0
    );
    let panels: [(&str, Figure); 2] = [
        ("server CPU per delivery (µs)", |s| s.cpu_us_per_delivery),
        ("p99 latency (ms)", |s| s.p99_us.map(|p| p as f64 / 1e3)),
    ];
    for (p, (title, value)) in panels.iter().enumerate() {
        let x0 = p as f64 * w;
        let values: Vec<f64> = all
            .iter()
            .flat_map(|s| &s.steps)
            .filter_map(value)
            .filter(|v| *v > 0.0)
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        if values.is_empty() {
            continue;
        }
        let (llo, lhi) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let y = |v: f64| pad + (h - 2.0 * pad) * (1.0 - (v.log10() - llo) / (lhi - llo));
        let step = (w - 2.0 * pad) / (rates.len().max(2) - 1) as f64;
        let x = |i: usize| x0 + pad + step * i as f64;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\">{title}</text>",
            x0 + w / 2.0
        );
        let _ = writeln!(
            out,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\
             <line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\" stroke=\"black\"/>",
            x0 + pad,
            pad,
            h - pad,
            x0 + w - pad
        );
        let mut decade = llo;
        while decade <= lhi {
            let v = 10f64.powf(decade);
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                x0 + pad - 4.0,
                y(v) + 4.0,
                v
            );
            decade += 1.0;
        }
        for (i, r) in rates.iter().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x(i),
                h - pad + 16.0,
                rate_name(*r)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">asked events/s</text>",
            x0 + w / 2.0,
            h - pad + 32.0
        );
        for (k, s) in all.iter().enumerate() {
            let points: Vec<String> = rates
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let st = s.steps.iter().find(|st| st.asked == *r)?;
                    let v = value(st).filter(|v| *v > 0.0)?;
                    Some(format!("{:.1},{:.1}", x(i), y(v)))
                })
                .collect();
            let colour = COLOURS[k % COLOURS.len()];
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
        }
    }
    for (k, s) in all.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let ly = h + 10.0 + 20.0 * k as f64;
        let _ = writeln!(
            out,
            "<line x1=\"{pad}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" \
             stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{} ({} subscribers)</text>",
            pad + 30.0,
            pad + 36.0,
            ly + 4.0,
            escape(&s.label),
            s.subscribers
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(asked: Option<f64>, reached: f64) -> Step {
        Step {
            asked,
            reached,
            deliveries_per_second: reached * 1000.0,
            cpu_us_per_delivery: Some(1.0),
            p50_us: Some(100),
            p99_us: Some(1000),
            lost: 0,
        }
    }

    #[test]
    fn saturation_is_the_first_rate_missed_and_the_best_reached() {
        let s = Series {
            label: "a".into(),
            subscribers: 1000,
            steps: vec![
                step(Some(20.0), 20.0),
                step(Some(2000.0), 1995.0),
                step(Some(20000.0), 3100.0),
                step(None, 3300.0),
            ],
        };
        assert_eq!(
            s.saturation(),
            Some(Saturation {
                first_missed: Some(20000.0),
                events_per_second: 3300.0,
                deliveries_per_second: 3_300_000.0,
            })
        );
    }

    #[test]
    fn rates_are_numbers_or_max() {
        let list: Vec<String> = ["20", "max", " 2000 "].map(String::from).into();
        assert_eq!(
            parse_rates(&list).unwrap(),
            vec![Some(20.0), None, Some(2000.0)]
        );
        for bad in ["0", "-3", "fast", "inf"] {
            let err = parse_rates(&[bad.to_string()]).unwrap_err().to_string();
            assert!(err.contains("--sweep"), "{err}");
        }
    }

    #[test]
    fn the_table_and_plot_hold_every_series() {
        let a = Series {
            label: "ssehub".into(),
            subscribers: 1000,
            steps: vec![step(Some(20.0), 20.0), step(None, 3000.0)],
        };
        let b = Series {
            label: "floor<1>".into(),
            ..a.clone()
        };
        let t = table(&[a.clone(), b.clone()]);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("| max | 3000 | 1.000 | 1.00 | 3000 |"), "{t}");
        let plot = svg(&[a, b]);
        assert_eq!(
            plot.matches("<polyline").count(),
            4,
            "two panels, two series"
        );
        assert!(plot.contains("floor&lt;1&gt;"));
    }
}
