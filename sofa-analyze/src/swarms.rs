//! Function swarms: groups of sampled functions that run together — in the
//! same phase of a training step when steps were found, else in the same
//! stretch of the run. Each function is described by where in the step (or
//! run) its samples fall; k-means (linfa) groups functions with similar
//! profiles, k chosen by silhouette unless forced. Work is per function, not
//! per sample, so it scales with the program, not the recording.

use crate::fasthash::StackMap;
use crate::functions::FunctionRow;
use crate::steps::Steps;
use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::{Array2, ArrayView1};
use serde::Serialize;
use sofa_trace::tables::Sample;
use std::collections::HashMap;

/// Phase (or time) bins of each function's profile.
const BINS: usize = 16;
/// Functions clustered directly (the busiest); the rest join the nearest swarm.
const MAX_CLUSTERED: usize = 400;
const MAX_K: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Swarm {
    pub id: usize,
    /// Its dominant functions.
    pub caption: String,
    pub samples: u64,
    /// Of all samples.
    pub share: f64,
    pub start_ns: u64,
    pub end_ns: u64,
    pub top_functions: Vec<String>,
    pub modules: Vec<String>,
    /// Thread ids, busiest first.
    pub threads: Vec<u32>,
    /// System calls made while the swarm was running, and their time.
    pub syscalls: u64,
    pub syscall_ns: u64,
    /// Mean GPU utilisation while the swarm ran on the busiest thread; null without GPU data.
    pub gpu_util_mean: Option<f64>,
    /// Network bytes sent or received while the swarm ran on the busiest thread.
    pub net_bytes: u64,
}

/// Where in the step (or in the run) a sample falls, as a bin.
struct Phaser<'a> {
    boundaries: &'a [u64],
    start: u64,
    end: u64,
}

impl Phaser<'_> {
    fn bin(&self, t: u64) -> Option<usize> {
        if self.boundaries.len() >= 4 {
            let i = self.boundaries.partition_point(|&b| b <= t);
            if i == 0 || i >= self.boundaries.len() {
                return None; // outside the loop
            }
            let (a, b) = (self.boundaries[i - 1], self.boundaries[i]);
            let phase = (t - a) as f64 / (b - a).max(1) as f64;
            Some(((phase * BINS as f64) as usize).min(BINS - 1))
        } else {
            let phase =
                (t.saturating_sub(self.start)) as f64 / (self.end - self.start).max(1) as f64;
            Some(((phase * BINS as f64) as usize).min(BINS - 1))
        }
    }
}

/// Euclidean distance of two profiles.
pub fn distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Mean silhouette of a clustering (higher is better separated).
pub fn silhouette(data: &Array2<f64>, labels: &[usize], k: usize) -> f64 {
    let n = data.nrows();
    let mut total = 0.0;
    for i in 0..n {
        let mut sum = vec![0.0; k];
        let mut count = vec![0usize; k];
        for j in 0..n {
            if i != j {
                sum[labels[j]] += distance(data.row(i), data.row(j));
                count[labels[j]] += 1;
            }
        }
        let own = labels[i];
        if count[own] == 0 {
            continue; // singleton: silhouette 0
        }
        let a = sum[own] / count[own] as f64;
        let b = (0..k)
            .filter(|&c| c != own && count[c] > 0)
            .map(|c| sum[c] / count[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += (b - a) / a.max(b).max(1e-12);
        }
    }
    total / n as f64
}

fn kmeans(data: &Array2<f64>, k: usize) -> Option<(Vec<usize>, Array2<f64>)> {
    let dataset = DatasetBase::from(data.clone());
    let model = KMeans::params(k)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&dataset)
        .ok()?;
    let labels = model.predict(data).to_vec();
    Some((labels, model.centroids().clone()))
}

/// The swarms, largest first, and the swarm id of every function (by index
/// into `functions`).
pub fn find_swarms(
    samples: &[Sample],
    self_of_stack: &StackMap<usize>,
    functions: &[FunctionRow],
    steps: &Steps,
    force_k: Option<usize>,
) -> (Vec<Swarm>, Vec<usize>) {
    if samples.is_empty() || functions.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let (start, end) = samples.iter().fold((u64::MAX, 0), |(lo, hi), s| {
        (lo.min(s.time_ns), hi.max(s.time_ns))
    });
    let phaser = Phaser {
        boundaries: &steps.boundaries_ns,
        start,
        end,
    };
    // Profile of each function: its samples per phase bin, normalised.
    let mut profile = vec![[0.0f64; BINS]; functions.len()];
    for s in samples {
        if let (Some(&f), Some(bin)) = (self_of_stack.get(&s.stack_id), phaser.bin(s.time_ns)) {
            profile[f][bin] += 1.0;
        }
    }
    for p in &mut profile {
        let sum: f64 = p.iter().sum();
        if sum > 0.0 {
            p.iter_mut().for_each(|v| *v /= sum);
        }
    }
    let total: u64 = functions.iter().map(|f| f.self_samples).sum();
    let min_samples = (total / 200).max(5);
    let clustered: Vec<usize> = (0..functions.len())
        .filter(|&f| {
            functions[f].self_samples >= min_samples && profile[f].iter().any(|v| *v > 0.0)
        })
        .take(MAX_CLUSTERED)
        .collect();
    let data = Array2::from_shape_fn((clustered.len(), BINS), |(i, b)| profile[clustered[i]][b]);

    // Choose k: forced, or the best silhouette among 2..=MAX_K.
    let (labels, centroids) = match force_k {
        Some(k) if k >= 1 && clustered.len() >= k => kmeans(&data, k),
        _ if clustered.len() < 3 => None,
        Some(_) => None,
        None => (2..=MAX_K.min(clustered.len() - 1))
            .filter_map(|k| kmeans(&data, k).map(|(l, c)| (silhouette(&data, &l, k), l, c)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, l, c)| (l, c)),
    }
    .unwrap_or_else(|| {
        // Too few functions to cluster: one swarm of everything.
        let mean = data
            .mean_axis(ndarray::Axis(0))
            .unwrap_or_else(|| ndarray::Array1::zeros(BINS));
        (vec![0; clustered.len()], mean.insert_axis(ndarray::Axis(0)))
    });

    // Every function joins a swarm: the clustered ones by label, the others
    // by the nearest centroid.
    let mut swarm_of = vec![0usize; functions.len()];
    for (i, &f) in clustered.iter().enumerate() {
        swarm_of[f] = labels[i];
    }
    for f in 0..functions.len() {
        if !clustered.contains(&f) {
            let row = ndarray::Array1::from(profile[f].to_vec());
            swarm_of[f] = (0..centroids.nrows())
                .min_by(|&a, &b| {
                    distance(row.view(), centroids.row(a))
                        .total_cmp(&distance(row.view(), centroids.row(b)))
                })
                .unwrap_or(0);
        }
    }

    struct Acc {
        samples: u64,
        start: u64,
        end: u64,
        functions: Vec<(u64, usize)>,
        modules: HashMap<String, u64>,
        threads: HashMap<u32, u64>,
    }
    let k = centroids.nrows();
    let mut acc: Vec<Acc> = (0..k)
        .map(|_| Acc {
            samples: 0,
            start: u64::MAX,
            end: 0,
            functions: Vec::new(),
            modules: HashMap::new(),
            threads: HashMap::new(),
        })
        .collect();
    for (f, row) in functions.iter().enumerate() {
        if row.self_samples > 0 {
            let a = &mut acc[swarm_of[f]];
            a.functions.push((row.self_samples, f));
            *a.modules.entry(row.module.clone()).or_default() += row.self_samples;
        }
    }
    for s in samples {
        if let Some(&f) = self_of_stack.get(&s.stack_id) {
            let a = &mut acc[swarm_of[f]];
            a.samples += 1;
            a.start = a.start.min(s.time_ns);
            a.end = a.end.max(s.time_ns);
            *a.threads.entry(s.tid).or_default() += 1;
        }
    }
    let all = samples.len() as f64;
    // Clusters that got samples, by cluster index.
    let kept: Vec<usize> = (0..k).filter(|&c| acc[c].samples > 0).collect();
    let swarms: Vec<Swarm> = acc
        .into_iter()
        .filter(|a| a.samples > 0)
        .map(|mut a| {
            a.functions
                .sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
            let top: Vec<String> = a
                .functions
                .iter()
                .take(5)
                .map(|&(_, f)| functions[f].name.clone())
                .collect();
            let mut modules: Vec<(String, u64)> = a.modules.into_iter().collect();
            modules.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            let mut threads: Vec<(u32, u64)> = a.threads.into_iter().collect();
            threads.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
            Swarm {
                id: 0,
                caption: top.iter().take(2).cloned().collect::<Vec<_>>().join(" + "),
                samples: a.samples,
                share: a.samples as f64 / all,
                start_ns: a.start,
                end_ns: a.end,
                top_functions: top,
                modules: modules.into_iter().take(3).map(|m| m.0).collect(),
                threads: threads.into_iter().take(5).map(|t| t.0).collect(),
                syscalls: 0,
                syscall_ns: 0,
                gpu_util_mean: None,
                net_bytes: 0,
            }
        })
        .collect();
    // Number swarms by size; remember which cluster became which id.
    let mut order: Vec<usize> = (0..swarms.len()).collect();
    order.sort_by(|&a, &b| {
        swarms[b]
            .samples
            .cmp(&swarms[a].samples)
            .then_with(|| swarms[a].caption.cmp(&swarms[b].caption))
    });
    let mut id_of_cluster = vec![usize::MAX; k];
    let mut sorted = Vec::with_capacity(swarms.len());
    for (id, &j) in order.iter().enumerate() {
        id_of_cluster[kept[j]] = id;
        let mut swarm = swarms[j].clone();
        swarm.id = id;
        sorted.push(swarm);
    }
    let swarm_of_function = swarm_of.into_iter().map(|c| id_of_cluster[c]).collect();
    (sorted, swarm_of_function)
}
