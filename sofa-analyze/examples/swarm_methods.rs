//! Which clustering makes the swarms: k-means (k by silhouette, what
//! `find_swarms` uses), DBSCAN (linfa) and agglomerative average-linkage
//! clustering (cut by silhouette), compared on the data swarms are made
//! from: one 16-bin phase profile per function.
//!
//! ```text
//! cargo run --release -p sofa-analyze --example swarm_methods
//! ```
//!
//! Profiles are generated with a known answer: P phases of a step, each with
//! its functions; a function's samples fall in its phase's bins, except a
//! `noise` share anywhere in the step (other threads, skid, misattributed
//! samples). Sample counts per function are skewed like real programs (a few
//! hot functions, many cold ones). Scored by the adjusted Rand index against
//! the true phases (1 = perfect, 0 = chance) and time per clustering.

use linfa::prelude::*;
use linfa_clustering::{Dbscan, KMeans};
use ndarray::Array2;
use sofa_analyze::distance;
use std::time::Instant;

const BINS: usize = 16;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Profiles (rows) and the true phase of each function.
fn generate(phases: usize, functions: usize, noise: f64, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = Rng(seed);
    let mut data = Array2::zeros((functions, BINS));
    let mut truth = Vec::with_capacity(functions);
    // Unequal phases: phase p spans bins [edges[p], edges[p + 1]).
    let edges: Vec<usize> = (0..=phases).map(|p| p * BINS / phases).collect();
    for f in 0..functions {
        let phase = f % phases;
        truth.push(phase);
        // Zipf-like: function f gets ~ 2000 / (1 + f / 4) samples, at least 20.
        let samples = (2000.0 / (1.0 + f as f64 / 4.0)).max(20.0) as usize;
        for _ in 0..samples {
            let bin = if rng.unit() < noise {
                (rng.next() % BINS as u64) as usize
            } else {
                let width = edges[phase + 1] - edges[phase];
                edges[phase] + (rng.next() % width as u64) as usize
            };
            data[[f, bin]] += 1.0;
        }
        let sum: f64 = data.row(f).sum();
        data.row_mut(f).mapv_inplace(|v| v / sum);
    }
    (data, truth)
}

/// Silhouette with k taken from the labels.
fn silhouette(data: &Array2<f64>, labels: &[usize]) -> f64 {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    sofa_analyze::silhouette(data, labels, k)
}

/// Adjusted Rand index of two labellings.
fn ari(a: &[usize], b: &[usize]) -> f64 {
    let ka = a.iter().max().map_or(0, |m| m + 1);
    let kb = b.iter().max().map_or(0, |m| m + 1);
    let mut table = vec![vec![0f64; kb]; ka];
    for (&x, &y) in a.iter().zip(b) {
        table[x][y] += 1.0;
    }
    let pairs = |n: f64| n * (n - 1.0) / 2.0;
    let index: f64 = table.iter().flatten().map(|&n| pairs(n)).sum();
    let rows: f64 = table.iter().map(|r| pairs(r.iter().sum())).sum();
    let cols: f64 = (0..kb)
        .map(|j| pairs(table.iter().map(|r| r[j]).sum()))
        .sum();
    let all = pairs(a.len() as f64);
    let expected = rows * cols / all;
    let max = (rows + cols) / 2.0;
    if (max - expected).abs() < 1e-12 {
        1.0
    } else {
        (index - expected) / (max - expected)
    }
}

fn kmeans(data: &Array2<f64>) -> Vec<usize> {
    (2..=8)
        .filter_map(|k| {
            let model = KMeans::params(k)
                .max_n_iterations(200)
                .tolerance(1e-6)
                .fit(&DatasetBase::from(data.clone()))
                .ok()?;
            let labels = model.predict(data).to_vec();
            Some((silhouette(data, &labels), labels))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, l)| l)
        .unwrap_or_default()
}

/// DBSCAN with min_points 4 and the tolerance at the median distance to
/// the 4th nearest neighbour (the usual k-distance heuristic); noise points
/// join the cluster of their nearest clustered point.
fn dbscan(data: &Array2<f64>) -> Vec<usize> {
    let n = data.nrows();
    let mut kth: Vec<f64> = (0..n)
        .map(|i| {
            let mut d: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| distance(data.row(i), data.row(j)))
                .collect();
            d.sort_by(f64::total_cmp);
            d[3.min(d.len() - 1)]
        })
        .collect();
    kth.sort_by(f64::total_cmp);
    let tolerance = kth[n / 2];
    let Ok(labels) = Dbscan::params(4).tolerance(tolerance).transform(data) else {
        return vec![0; n];
    };
    let labels: Vec<Option<usize>> = labels.to_vec();
    (0..n)
        .map(|i| {
            labels[i].unwrap_or_else(|| {
                (0..n)
                    .filter(|&j| labels[j].is_some())
                    .min_by(|&a, &b| {
                        distance(data.row(i), data.row(a))
                            .total_cmp(&distance(data.row(i), data.row(b)))
                    })
                    .and_then(|j| labels[j])
                    .unwrap_or(0)
            })
        })
        .collect()
}

/// Agglomerative clustering, average linkage; the cut (2..=8 clusters)
/// with the best silhouette.
fn agglomerative(data: &Array2<f64>) -> Vec<usize> {
    let n = data.nrows();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let d: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| distance(data.row(i), data.row(j))).collect())
        .collect();
    let mut link: Vec<Vec<f64>> = d.clone();
    let mut alive: Vec<bool> = vec![true; n];
    let mut best: Option<(f64, Vec<usize>)> = None;
    let mut clusters = n;
    while clusters > 2 {
        let (mut a, mut b, mut low) = (0, 0, f64::INFINITY);
        for i in 0..n {
            if !alive[i] {
                continue;
            }
            for j in i + 1..n {
                if alive[j] && link[i][j] < low {
                    (a, b, low) = (i, j, link[i][j]);
                }
            }
        }
        let (na, nb) = (members[a].len() as f64, members[b].len() as f64);
        for j in 0..n {
            if alive[j] && j != a && j != b {
                let v = (link[a][j] * na + link[b][j] * nb) / (na + nb);
                link[a][j] = v;
                link[j][a] = v;
            }
        }
        let moved = std::mem::take(&mut members[b]);
        members[a].extend(moved);
        alive[b] = false;
        clusters -= 1;
        if clusters <= 8 {
            let mut labels = vec![0; n];
            for (c, m) in members.iter().filter(|m| !m.is_empty()).enumerate() {
                for &i in m {
                    labels[i] = c;
                }
            }
            let s = silhouette(data, &labels);
            if best.as_ref().is_none_or(|(bs, _)| s > *bs) {
                best = Some((s, labels));
            }
        }
    }
    best.map(|(_, l)| l).unwrap_or_else(|| vec![0; n])
}

fn main() {
    println!(
        "| phases | functions | noise | method | ARI (mean of 5 seeds) | clusters | time per run |"
    );
    println!("| ---: | ---: | ---: | --- | ---: | ---: | ---: |");
    for (phases, functions, noise) in [
        (2, 60, 0.1),
        (5, 200, 0.3),
        (5, 400, 0.5),
        (8, 400, 0.5),
        (5, 400, 0.8),
        (8, 400, 0.8),
    ] {
        type Method = fn(&Array2<f64>) -> Vec<usize>;
        let methods: [(&str, Method); 3] = [
            ("k-means + silhouette", kmeans),
            ("DBSCAN (k-distance eps)", dbscan),
            ("agglomerative (average)", agglomerative),
        ];
        for (name, method) in methods {
            let (mut score, mut k, mut secs) = (0.0, 0.0, 0.0);
            let seeds = 5;
            for seed in 1..=seeds {
                let (data, truth) = generate(phases, functions, noise, 0x9e37_79b9 * seed);
                let started = Instant::now();
                let labels = method(&data);
                secs += started.elapsed().as_secs_f64();
                score += ari(&labels, &truth);
                k += (labels.iter().max().map_or(0, |m| m + 1)) as f64;
            }
            let s = seeds as f64;
            println!(
                "| {phases} | {functions} | {noise} | {name} | {:.3} | {:.1} | {:.1} ms |",
                score / s,
                k / s,
                secs / s * 1e3
            );
        }
    }
}
