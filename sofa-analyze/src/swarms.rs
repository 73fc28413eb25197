//! Function swarms: groups of sampled functions that run together — the
//! same phase of a training step, the same stretch of the run. Each function
//! is described by what runs beside it: the share of each of the busiest
//! functions among the samples next to its own on the same thread. This
//! needs no step boundaries, so a phase stays one swarm when steps jitter or
//! were not found. k-means (linfa) groups functions with similar company, k
//! chosen by a silhouette weighted by samples unless forced. Clustering is
//! per function, not per sample; one pass over the samples builds the
//! features.

use crate::Samples;
use crate::fasthash::{FastMap, StackMap};
use crate::functions::FunctionRow;
use crate::labels::SwarmId;
use crate::silhouette::{Distances, silhouette_of};
use crate::steps::Steps;
use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use serde::Serialize;
use sofa_trace::TraceError;
use std::collections::HashMap;

/// Functions clustered directly (the busiest); the rest join the nearest swarm.
const MAX_CLUSTERED: usize = 400;
const MAX_K: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Swarm {
    pub id: usize,
    /// Its dominant functions, after the Python function they run under
    /// when one holds most of its samples ("forward: sgemm_kernel + …").
    pub caption: String,
    /// The innermost Python function of most of its samples, if any.
    pub python_function: Option<String>,
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
    /// The framework phase (forward, backward, …, other) of most of the
    /// main process's samples in the swarm, and their share; null for jobs
    /// without framework phases.
    pub phase: Option<String>,
    pub phase_share: Option<f64>,
}

/// Names each swarm's Python function: the innermost Python function of
/// more than half of its samples that have Python frames (when at least a
/// quarter have), added to its caption unless the caption already names it.
pub(crate) fn name_python_functions(
    swarms: &mut [Swarm],
    samples: &Samples,
    self_of_stack: &StackMap<usize>,
    swarm_of_function: &[Option<SwarmId>],
    python_of_stack: &StackMap<usize>,
    functions: &[FunctionRow],
) -> Result<(), TraceError> {
    if python_of_stack.is_empty() {
        return Ok(());
    }
    let mut counts: Vec<HashMap<usize, u64>> = vec![HashMap::new(); swarms.len()];
    samples.for_each(|s| {
        let Some(SwarmId(swarm)) = self_of_stack
            .get(&s.stack_id())
            .and_then(|&f| swarm_of_function.get(f).copied().flatten())
        else {
            return;
        };
        if let (Some(&f), Some(c)) = (python_of_stack.get(&s.stack_id()), counts.get_mut(swarm)) {
            *c.entry(f).or_default() += 1;
        }
    })?;
    for (swarm, c) in swarms.iter_mut().zip(counts) {
        let with_python: u64 = c.values().sum();
        let Some((f, n)) = c
            .into_iter()
            .max_by_key(|&(f, n)| (n, std::cmp::Reverse(f)))
        else {
            continue;
        };
        if 2 * n <= with_python || 4 * with_python < swarm.samples {
            continue;
        }
        let name = functions[f].name.clone();
        if !swarm.caption.split(" + ").any(|c| c == name) {
            swarm.caption = format!("{name}: {}", swarm.caption);
        }
        swarm.python_function = Some(name);
    }
    Ok(())
}

/// Samples of a thread keep company with this many samples before them.
const NEIGHBOURS: usize = 4;

/// How far apart two samples of a thread may be and still run together:
/// six sampling intervals of the busiest thread (so the neighbours are
/// those of a running thread, not across a sleep), at most an eighth of a
/// step when steps were found, never under two intervals.
fn reach_ns(samples: &Samples, steps: &Steps) -> Result<u64, TraceError> {
    let mut per_thread: FastMap<u32, (u64, u64, u64)> = FastMap::default();
    let counts = samples.tally().per_thread();
    for ((pid, tid), (first, last)) in samples.tally().spans() {
        let e = per_thread.entry(tid).or_insert((0, u64::MAX, 0));
        e.0 += counts[&(pid, tid)];
        e.1 = e.1.min(first);
        e.2 = e.2.max(last);
    }
    // The busiest thread; of two as busy, the lower tid (not whichever
    // the map gives last).
    let interval = per_thread
        .iter()
        .max_by_key(|&(tid, e)| (e.0, std::cmp::Reverse(*tid)))
        .map(|(_, &(n, lo, hi))| (hi - lo) / n.max(1))
        .unwrap_or(1_000_000)
        .max(1_000);
    let mut reach = 6 * interval;
    if let Some(period) = steps.period_ns.filter(|_| steps.count > 0) {
        reach = reach.min(period / 8).max(2 * interval);
    }
    Ok(reach)
}

/// Calls `visit(f, g)` for every pair of samples that run together: a
/// sample and each of the `NEIGHBOURS` samples of its thread before it,
/// within `reach` ns; `f` and `g` are their functions.
fn neighbours(
    samples: &Samples,
    self_of_stack: &StackMap<usize>,
    reach: u64,
    mut visit: impl FnMut(usize, usize),
) -> Result<(), TraceError> {
    // Per thread: its last samples (function, time), oldest overwritten,
    // and where the next one goes.
    type Ring = [Option<(usize, u64)>; NEIGHBOURS];
    let mut recent: FastMap<u32, (Ring, usize)> = FastMap::default();
    samples.for_each(|s| {
        let Some(&f) = self_of_stack.get(&s.stack_id()) else {
            return;
        };
        let (ring, next) = recent.entry(s.tid).or_insert(([None; NEIGHBOURS], 0));
        for &(g, t) in ring.iter().flatten() {
            if s.time_ns.abs_diff(t) <= reach {
                visit(f, g);
            }
        }
        ring[*next] = Some((f, s.time_ns));
        *next = (*next + 1) % NEIGHBOURS;
    })
}

/// What runs beside each clustered function: row `i` holds, for every
/// clustered function `j`, the share of `j` among the neighbours of `i`'s
/// samples (pairs counted both ways; a function is its own neighbour only
/// when it runs for a while).
fn company(
    samples: &Samples,
    self_of_stack: &StackMap<usize>,
    index_of: &[Option<usize>],
    n: usize,
    reach: u64,
) -> Result<Array2<f64>, TraceError> {
    let mut pairs = Array2::<f64>::zeros((n, n));
    neighbours(samples, self_of_stack, reach, |f, g| {
        if let (Some(i), Some(j)) = (index_of[f], index_of[g]) {
            pairs[[i, j]] += 1.0;
            pairs[[j, i]] += 1.0;
        }
    })?;
    for mut row in pairs.rows_mut() {
        let sum = row.sum();
        if sum > 0.0 {
            row /= sum;
        }
    }
    Ok(pairs)
}

fn kmeans(data: &Array2<f64>, k: usize) -> Option<Vec<usize>> {
    let dataset = DatasetBase::from(data.clone());
    let model = KMeans::params(k)
        .n_runs(2)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&dataset)
        .ok()?;
    Some(model.predict(data).to_vec())
}

/// The swarms, largest first, and the swarm id of every function (by index
/// into `functions`).
pub fn find_swarms(
    samples: &Samples,
    self_of_stack: &StackMap<usize>,
    functions: &[FunctionRow],
    steps: &Steps,
    force_k: Option<usize>,
) -> Result<(Vec<Swarm>, Vec<Option<SwarmId>>), TraceError> {
    if samples.is_empty() || functions.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // Functions clustered directly: the busiest, with at least 0.05 % of the
    // samples (and five).
    let total: u64 = functions.iter().map(|f| f.self_samples).sum();
    let min_samples = (total / 2000).max(5);
    let mut by_samples: Vec<usize> = (0..functions.len()).collect();
    by_samples.sort_by(|&a, &b| {
        functions[b]
            .self_samples
            .cmp(&functions[a].self_samples)
            .then(a.cmp(&b))
    });
    let clustered: Vec<usize> = by_samples
        .iter()
        .copied()
        .filter(|&f| functions[f].self_samples >= min_samples)
        .take(MAX_CLUSTERED)
        .collect();
    // Row of each function in the clustered data, if it is clustered.
    let mut index_of: Vec<Option<usize>> = vec![None; functions.len()];
    for (i, &f) in clustered.iter().enumerate() {
        index_of[f] = Some(i);
    }
    let reach = reach_ns(samples, steps)?;
    let data = company(samples, self_of_stack, &index_of, clustered.len(), reach)?;
    // Weights: square roots of the samples, so hot functions decide the
    // number of swarms without a single one overruling the rest.
    let weights: Vec<f64> = clustered
        .iter()
        .map(|&f| (functions[f].self_samples as f64).sqrt())
        .collect();

    // Choose k: forced, or the best silhouette among 2..=MAX_K.
    let labels = match force_k {
        Some(k) if k >= 1 && clustered.len() >= k => kmeans(&data, k),
        _ if clustered.len() < 3 => None,
        Some(_) => None,
        None => {
            use rayon::prelude::*;
            let dist = Distances::new(&data);
            // Each k on a worker thread; the results are compared in k order.
            let tried: Vec<(f64, Vec<usize>)> = (2..=MAX_K.min(clustered.len() - 1))
                .into_par_iter()
                .filter_map(|k| {
                    kmeans(&data, k).map(|l| (silhouette_of(&dist, &l, k, &weights), l))
                })
                .collect();
            tried
                .into_iter()
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, l)| l)
        }
    }
    .unwrap_or_else(|| vec![0; clustered.len()]);
    let k = labels.iter().max().map_or(1, |&l| l + 1);

    // Every function joins a swarm: the clustered ones by label, the others
    // the swarm they most often run beside (else the busiest swarm).
    let mut cluster_of: Vec<Option<usize>> = vec![None; functions.len()];
    let mut size = vec![0u64; k];
    for (i, &f) in clustered.iter().enumerate() {
        cluster_of[f] = Some(labels[i]);
        size[labels[i]] += functions[f].self_samples;
    }
    let busiest = (0..k)
        .max_by_key(|&c| (size[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    let mut votes: FastMap<usize, Vec<u64>> = FastMap::default();
    if clustered.len() < functions.len() {
        neighbours(samples, self_of_stack, reach, |f, g| {
            for (rare, known) in [(f, g), (g, f)] {
                if let (None, Some(i)) = (index_of[rare], index_of[known]) {
                    votes.entry(rare).or_insert_with(|| vec![0; k])[labels[i]] += 1;
                }
            }
        })?;
    }
    let swarm_of: Vec<usize> = cluster_of
        .into_iter()
        .enumerate()
        .map(|(f, cluster)| {
            cluster.unwrap_or_else(|| {
                votes
                    .get(&f)
                    .and_then(|v| {
                        (0..k)
                            .filter(|&c| v[c] > 0)
                            .max_by_key(|&c| (v[c], std::cmp::Reverse(c)))
                    })
                    .unwrap_or(busiest)
            })
        })
        .collect();

    struct Acc {
        samples: u64,
        start: u64,
        end: u64,
        functions: Vec<(u64, usize)>,
        modules: HashMap<String, u64>,
        threads: HashMap<u32, u64>,
    }
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
    samples.for_each(|s| {
        if let Some(&f) = self_of_stack.get(&s.stack_id()) {
            let a = &mut acc[swarm_of[f]];
            a.samples += 1;
            a.start = a.start.min(s.time_ns);
            a.end = a.end.max(s.time_ns);
            *a.threads.entry(s.tid).or_default() += 1;
        }
    })?;
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
                caption: top
                    .iter()
                    .take(2)
                    .map(|name| crate::functions::short_name(name))
                    .collect::<Vec<_>>()
                    .join(" + "),
                python_function: None,
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
                phase: None,
                phase_share: None,
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
    // Clusters that got no samples became no swarm.
    let mut id_of_cluster: Vec<Option<SwarmId>> = vec![None; k];
    let mut sorted = Vec::with_capacity(swarms.len());
    for (id, &j) in order.iter().enumerate() {
        id_of_cluster[kept[j]] = Some(SwarmId(id));
        let mut swarm = swarms[j].clone();
        swarm.id = id;
        sorted.push(swarm);
    }
    let swarm_of_function = swarm_of.into_iter().map(|c| id_of_cluster[c]).collect();
    Ok((sorted, swarm_of_function))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHASES: [(usize, u64); 3] = [(0, 24), (1, 8), (2, 8)]; // (phase, ms)

    struct Run {
        samples: Samples<'static>,
        self_of_stack: StackMap<usize>,
        functions: Vec<FunctionRow>,
        /// True phase of each function.
        phase_of: Vec<usize>,
    }

    /// One thread sampled every 1 ms through `steps` steps of three phases
    /// whose lengths jitter by up to ±40 %; phase p runs functions
    /// 4p..4p+4, 10 % of the samples land on a random function instead.
    /// Function 12 is rare (3 samples), always in the middle of phase 2.
    fn run(steps: usize) -> Run {
        let mut x = 0x2545f4914f6cdd1du64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut samples = Vec::new();
        let mut t = 1_000_000_000u64;
        let mut push = |f: u64, t: u64| samples.push(crate::test_sample(t, f));
        let mut rare = 0;
        for step in 0..steps {
            for (phase, ms) in PHASES {
                let len = ms * (60 + rand() % 81) / 100;
                for i in 0..len {
                    let f = if rare < 3 && phase == 2 && i == len / 2 && step % 7 == 3 {
                        rare += 1;
                        12
                    } else if rand() % 10 == 0 {
                        rand() % 12
                    } else {
                        4 * phase as u64 + rand() % 4
                    };
                    push(f, t);
                    t += 1_000_000;
                }
            }
        }
        let mut functions: Vec<FunctionRow> = (0..13)
            .map(|f| FunctionRow {
                name: format!("f{f}"),
                module: "m".into(),
                self_samples: 0,
                self_share: 0.0,
                total_samples: 0,
                total_share: 0.0,
            })
            .collect();
        for s in &samples {
            functions[s.stack_id().unwrap() as usize].self_samples += 1;
        }
        Run {
            samples: Samples::from_rows(samples),
            self_of_stack: (0..13).map(|f| (Some(f), f as usize)).collect(),
            functions,
            phase_of: (0..13).map(|f| (f / 4).min(2)).collect(),
        }
    }

    /// Each true phase in a swarm of its own, the rare function with its phase.
    fn assert_phases(r: &Run, swarms: &[Swarm], swarm_of: &[Option<SwarmId>]) {
        assert_eq!(swarms.len(), 3, "{swarms:#?}");
        assert!(
            swarm_of.iter().all(Option::is_some),
            "every function in a swarm"
        );
        for f in 0..13 {
            for g in 0..13 {
                assert_eq!(
                    swarm_of[f] == swarm_of[g],
                    r.phase_of[f] == r.phase_of[g],
                    "f{f} and f{g}: {swarm_of:?}"
                );
            }
        }
        assert_eq!(
            swarms.iter().map(|s| s.samples).sum::<u64>(),
            r.samples.len()
        );
    }

    #[test]
    fn phases_become_swarms_without_step_boundaries() {
        let r = run(60);
        // No steps found: the features need no boundaries.
        let (swarms, swarm_of) = find_swarms(
            &r.samples,
            &r.self_of_stack,
            &r.functions,
            &Steps::default(),
            None,
        )
        .unwrap();
        assert_phases(&r, &swarms, &swarm_of);
        // The longest phase is the biggest swarm, captioned by its functions.
        assert!(
            swarms[0].caption.contains("f0")
                || swarms[0].caption.contains("f1")
                || swarms[0].caption.contains("f2")
                || swarms[0].caption.contains("f3")
        );
    }

    #[test]
    fn phases_become_swarms_with_steps() {
        let r = run(60);
        let steps = Steps {
            count: 60,
            period_ns: Some(40_000_000),
            ..Steps::default()
        };
        let (swarms, swarm_of) =
            find_swarms(&r.samples, &r.self_of_stack, &r.functions, &steps, None).unwrap();
        assert_phases(&r, &swarms, &swarm_of);
        // Deterministic.
        let again = find_swarms(&r.samples, &r.self_of_stack, &r.functions, &steps, None).unwrap();
        assert_eq!(again, (swarms, swarm_of));
    }

    #[test]
    fn forced_count_is_obeyed() {
        let r = run(30);
        let (swarms, _) = find_swarms(
            &r.samples,
            &r.self_of_stack,
            &r.functions,
            &Steps::default(),
            Some(2),
        )
        .unwrap();
        assert_eq!(swarms.len(), 2);
    }

    #[test]
    fn swarms_are_named_by_the_python_function_most_of_them_run_under() {
        let r = run(30);
        let (mut swarms, swarm_of) = find_swarms(
            &r.samples,
            &r.self_of_stack,
            &r.functions,
            &Steps::default(),
            None,
        )
        .unwrap();
        // Stacks of phase 0's functions run under Python `forward` (row 12
        // stands in for it); the others have no Python frames.
        let python_of_stack: StackMap<usize> = (0..4).map(|f| (Some(f), 12)).collect();
        let before: Vec<String> = swarms.iter().map(|s| s.caption.clone()).collect();
        name_python_functions(
            &mut swarms,
            &r.samples,
            &r.self_of_stack,
            &swarm_of,
            &python_of_stack,
            &r.functions,
        )
        .unwrap();
        let phase0 = swarm_of[0].unwrap().0;
        for (i, s) in swarms.iter().enumerate() {
            if i == phase0 {
                assert_eq!(s.python_function.as_deref(), Some("f12"));
                assert_eq!(s.caption, format!("f12: {}", before[i]));
            } else {
                assert_eq!(s.python_function, None, "{s:?}");
                assert_eq!(s.caption, before[i]);
            }
        }
    }
}
