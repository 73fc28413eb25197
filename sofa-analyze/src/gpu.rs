//! Per-GPU summary of the NVML counters.

use serde::Serialize;
use sofa_trace::GpuInfo;
use sofa_trace::tables::GpuCounter;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuRow {
    pub index: u32,
    pub name: String,
    /// Mean GPU utilisation, percent.
    pub util_mean: Option<f64>,
    /// Share of samples in which the GPU was idle (utilisation 0).
    pub util_idle_share: Option<f64>,
    pub mem_used_max_bytes: Option<u64>,
    pub power_mean_w: Option<f64>,
    /// Power integrated over time (trapezoids between samples).
    pub energy_j: Option<f64>,
    pub samples: u64,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

pub fn gpu_table(counters: &[GpuCounter], names: &[GpuInfo]) -> Vec<GpuRow> {
    let mut per: BTreeMap<u32, Vec<&GpuCounter>> = BTreeMap::new();
    for row in counters {
        per.entry(row.gpu).or_default().push(row);
    }
    per.into_iter()
        .map(|(index, mut rows)| {
            rows.sort_by_key(|r| r.time_ns);
            let util: Vec<f64> = rows.iter().filter_map(|r| r.util_gpu).collect();
            let power: Vec<(u64, f64)> = rows
                .iter()
                .filter_map(|r| Some((r.time_ns, r.power_w?)))
                .collect();
            let energy_j = (power.len() >= 2).then(|| {
                power
                    .windows(2)
                    .map(|w| (w[1].0 - w[0].0) as f64 / 1e9 * (w[0].1 + w[1].1) / 2.0)
                    .sum()
            });
            GpuRow {
                index,
                name: names
                    .iter()
                    .find(|g| g.index == index)
                    .map_or_else(|| format!("GPU {index}"), |g| g.name.clone()),
                util_mean: mean(&util),
                util_idle_share: (!util.is_empty())
                    .then(|| util.iter().filter(|u| **u < 1.0).count() as f64 / util.len() as f64),
                mem_used_max_bytes: rows.iter().filter_map(|r| r.mem_used_bytes).max(),
                power_mean_w: mean(&power.iter().map(|p| p.1).collect::<Vec<_>>()),
                energy_j,
                samples: rows.len() as u64,
            }
        })
        .collect()
}
