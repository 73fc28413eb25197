//! Several archives at once (one per rank or host): lined up on the wall
//! clock, with a merged function table that keeps each archive's column.

use crate::Analysis;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankRow {
    pub archive: String,
    pub host: String,
    /// Wall-clock start (ns since the Unix epoch).
    pub start_wall_ns: u64,
    /// Start relative to the earliest archive, ns.
    pub offset_ns: u64,
    pub duration_ns: Option<u64>,
    pub samples: u64,
    pub steps: u64,
    pub period_ns: Option<u64>,
    pub top_function: Option<String>,
    pub gpu_util_mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedFunction {
    pub name: String,
    pub module: String,
    /// Self samples over all archives.
    pub self_samples: u64,
    /// Self share of each archive's samples, in archive order (0 where absent).
    pub self_share_by_archive: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MultiAnalysis {
    pub ranks: Vec<RankRow>,
    pub functions: Vec<MergedFunction>,
    pub archives: Vec<Analysis>,
}

pub fn merge(archives: Vec<Analysis>) -> MultiAnalysis {
    let earliest = archives
        .iter()
        .map(|a| a.run.start_wall_ns)
        .min()
        .unwrap_or(0);
    let ranks = archives
        .iter()
        .map(|a| RankRow {
            archive: a.run.archive.clone(),
            host: a.run.host.clone(),
            start_wall_ns: a.run.start_wall_ns,
            offset_ns: a.run.start_wall_ns - earliest,
            duration_ns: a.run.duration_ns,
            samples: a.run.samples,
            steps: a.steps.count,
            period_ns: a.steps.period_ns,
            top_function: a.functions.first().map(|f| f.name.clone()),
            gpu_util_mean: {
                let utils: Vec<f64> = a.gpu.iter().filter_map(|g| g.util_mean).collect();
                (!utils.is_empty()).then(|| utils.iter().sum::<f64>() / utils.len() as f64)
            },
        })
        .collect();
    let mut merged: BTreeMap<(String, String), (u64, Vec<f64>)> = BTreeMap::new();
    for (i, a) in archives.iter().enumerate() {
        for f in &a.functions {
            let slot = merged
                .entry((f.name.clone(), f.module.clone()))
                .or_insert_with(|| (0, vec![0.0; archives.len()]));
            slot.0 += f.self_samples;
            slot.1[i] = f.self_share;
        }
    }
    let mut functions: Vec<MergedFunction> = merged
        .into_iter()
        .filter(|(_, (n, _))| *n > 0)
        .map(|((name, module), (self_samples, shares))| MergedFunction {
            name,
            module,
            self_samples,
            self_share_by_archive: shares,
        })
        .collect();
    functions.sort_by(|a, b| {
        b.self_samples
            .cmp(&a.self_samples)
            .then_with(|| a.name.cmp(&b.name))
    });
    MultiAnalysis {
        ranks,
        functions,
        archives,
    }
}
