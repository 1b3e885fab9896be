//! Percentiles, the one-line results a run prints for `bench compare`, and the side-by-side
//! table `bench compare` makes of them: each figure's median over the runs of each system,
//! their range, and the ratio Payrail ÷ svix.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Prints `label: n= p50= p90= p99= max=`; the sorted values.
pub fn summary(label: &str, mut ms: Vec<f64>) -> Vec<f64> {
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{label}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        ms.len(),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    ms
}

/// Whether a smaller figure is the better one.
#[derive(Clone, Copy)]
pub enum Better {
    Lower,
    Higher,
}

/// One run's figures, printed as a `RESULT {json}` line that `bench compare` reads back.
pub struct Report {
    system: &'static str,
    scenario: String,
    figures: Vec<(String, f64, Better)>,
}

impl Report {
    pub fn new(system: &'static str, scenario: impl Into<String>) -> Report {
        Report {
            system,
            scenario: scenario.into(),
            figures: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, value: f64, better: Better) {
        self.figures.push((name.to_string(), value, better));
    }

    pub fn print(&self) {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|(name, value, better)| {
                json!({"name": name, "value": value,
                       "lower_is_better": matches!(better, Better::Lower)})
            })
            .collect();
        println!(
            "RESULT {}",
            json!({"system": self.system, "scenario": self.scenario, "figures": figures})
        );
    }
}

#[derive(Default)]
struct Figure {
    lower_is_better: bool,
    values: BTreeMap<String, Vec<f64>>,
}

/// `bench compare FILE...`: the markdown table of every figure in the files' `RESULT` lines.
pub fn compare(files: &[String]) -> anyhow::Result<()> {
    // (scenario, figure) in first-seen order → values per system.
    let mut order: Vec<(String, String)> = Vec::new();
    let mut figures: BTreeMap<(String, String), Figure> = BTreeMap::new();
    for file in files {
        for line in std::fs::read_to_string(file)?.lines() {
            let Some(json) = line.strip_prefix("RESULT ") else {
                continue;
            };
            let run: Map<String, Value> = serde_json::from_str(json)?;
            let system = run["system"].as_str().unwrap_or("?").to_string();
            let scenario = run["scenario"].as_str().unwrap_or("?").to_string();
            for f in run["figures"].as_array().into_iter().flatten() {
                let name = f["name"].as_str().unwrap_or("?").to_string();
                let key = (scenario.clone(), name);
                if !figures.contains_key(&key) {
                    order.push(key.clone());
                }
                let entry = figures.entry(key).or_default();
                entry.lower_is_better = f["lower_is_better"].as_bool().unwrap_or(true);
                if let Some(v) = f["value"].as_f64() {
                    entry.values.entry(system.clone()).or_default().push(v);
                }
            }
        }
    }
    println!(
        "| scenario | figure | svix-server (median, range) | Payrail (median, range) | Payrail ÷ svix | Payrail |"
    );
    println!("|---|---|---|---|---|---|");
    for key in order {
        let figure = &figures[&key];
        let svix = figure.values.get("svix").map(|v| spread(v));
        let ours = figure.values.get("payrail").map(|v| spread(v));
        let (ratio, verdict) = match (&svix, &ours) {
            (Some((s, ..)), Some((p, ..))) if *s > 0.0 => {
                let ratio = p / s;
                let ahead = if figure.lower_is_better {
                    ratio <= 1.0
                } else {
                    ratio >= 1.0
                };
                (
                    format!("{ratio:.2}"),
                    if ahead { "at or ahead" } else { "behind" },
                )
            }
            _ => ("–".to_string(), "–"),
        };
        println!(
            "| {} | {} | {} | {} | {ratio} | {verdict} |",
            key.0,
            key.1,
            show(&svix),
            show(&ours)
        );
    }
    Ok(())
}

/// (median, min, max, runs)
fn spread(values: &[f64]) -> (f64, f64, f64, usize) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median = percentile(&v, 50.0);
    (median, v[0], v[v.len() - 1], v.len())
}

fn show(s: &Option<(f64, f64, f64, usize)>) -> String {
    match s {
        Some((median, min, max, n)) => {
            format!("{} ({}–{}, {n} runs)", num(*median), num(*min), num(*max))
        }
        None => "–".to_string(),
    }
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
