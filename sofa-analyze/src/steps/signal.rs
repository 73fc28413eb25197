//! Signal helpers shared by the step detectors.

/// Sum over `series` of each one's autocorrelation (mean removed), lags
/// `0..n`, divided by the overlap length and normalised to 1 at lag 0.
/// Two real series share one complex FFT: for z = x + iy, the summed power
/// |X_k|² + |Y_k|² is (|Z_k|² + |Z_(N-k)|²) / 2.
pub(super) fn autocorrelation(series: &[Vec<f64>], n: usize) -> Vec<f64> {
    use rayon::prelude::*;
    use rustfft::num_complex::Complex;
    let size = (2 * n).next_power_of_two();
    let mut planner = rustfft::FftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);
    // Power spectra of the series, two real series per complex transform,
    // summed per fixed chunk of series on the worker threads and then in
    // chunk order (the same sum whatever the number of threads).
    let partials: Vec<Vec<f64>> = series
        .par_chunks(8)
        .map(|chunk| {
            let mut power = vec![0.0; size];
            let mut buffer = vec![Complex::new(0.0, 0.0); size];
            for pair in chunk.chunks(2) {
                buffer.fill(Complex::new(0.0, 0.0));
                for (part, s) in pair.iter().enumerate() {
                    let mean = s.iter().sum::<f64>() / n as f64;
                    for (o, v) in buffer.iter_mut().zip(s) {
                        if part == 0 {
                            o.re = v - mean;
                        } else {
                            o.im = v - mean;
                        }
                    }
                }
                forward.process(&mut buffer);
                for k in 0..size {
                    let j = (size - k) % size;
                    power[k] += (buffer[k].norm_sqr() + buffer[j].norm_sqr()) / 2.0;
                }
            }
            power
        })
        .collect();
    let mut spectrum = vec![Complex::new(0.0, 0.0); size];
    for partial in &partials {
        for (p, v) in spectrum.iter_mut().zip(partial) {
            p.re += v;
        }
    }
    inverse.process(&mut spectrum);
    let zero = spectrum[0].re;
    if zero <= 0.0 {
        return vec![0.0; n];
    }
    (0..n)
        .map(|lag| spectrum[lag].re / zero * n as f64 / (n - lag) as f64)
        .collect()
}

#[cfg(test)]
/// Direct sum, to check the FFT path.
fn autocorrelation_direct(series: &[Vec<f64>], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for s in series {
        let mean = s.iter().sum::<f64>() / n as f64;
        for (lag, o) in out.iter_mut().enumerate() {
            *o += (0..n - lag)
                .map(|i| (s[i] - mean) * (s[i + lag] - mean))
                .sum::<f64>();
        }
    }
    let zero = out[0];
    (0..n)
        .map(|lag| out[lag] / zero * n as f64 / (n - lag) as f64)
        .collect()
}

/// Refines a period of `lag` bins to below one bin: finds the peak near k
/// periods for k = 2, 4, 8, ..., each time within a third of a period of
/// where the current estimate puts it (so it is the k-th multiple, not a
/// neighbour), and divides its position (interpolated by a parabola through
/// the peak and its neighbours) by k.
pub(super) fn refine_period(curve: &[f64], lag: usize, max_lag: usize) -> f64 {
    let mut period = lag as f64;
    let mut k = 2usize;
    while (k as f64 * period) as usize + 1 < max_lag {
        let center = k as f64 * period;
        let reach = (period / 3.0).max(1.0);
        let lo = ((center - reach).floor().max(1.0)) as usize;
        let hi = ((center + reach).ceil() as usize).min(max_lag - 1);
        let Some(peak) = (lo..=hi).max_by(|&a, &b| curve[a].total_cmp(&curve[b])) else {
            break;
        };
        period = (peak as f64 + parabola_offset(curve, peak)) / k as f64;
        k *= 2;
    }
    period
}

/// Where, within half a bin of `peak`, the parabola through `curve` at the
/// peak and its two neighbours has its vertex.
pub(super) fn parabola_offset(curve: &[f64], peak: usize) -> f64 {
    let (y0, y1, y2) = (curve[peak - 1], curve[peak], curve[peak + 1]);
    let denom = y0 - 2.0 * y1 + y2;
    if denom.abs() > 1e-12 {
        (0.5 * (y0 - y2) / denom).clamp(-0.5, 0.5)
    } else {
        0.0
    }
}

/// How a peak is told from its right neighbour when they are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ties {
    /// The first of equal values is a peak (match shares are ratios of small
    /// counts: plateaus are common).
    First,
    /// Only a value above its right neighbour is (FFT curves).
    Last,
}

/// The period peak of an autocorrelation `curve`: among local maxima at lags
/// `min_lag..max_lag` that stand at least `min_prominence` above the lowest
/// point since lag 2, the first nearly as high (90 %) as the highest one
/// (multiples of the period are as high). Its lag and height.
pub(super) fn period_peak(
    curve: &[f64],
    min_lag: usize,
    max_lag: usize,
    min_prominence: f64,
    ties: Ties,
) -> Option<(usize, f64)> {
    let mut low = f64::MAX;
    let mut peaks = Vec::new();
    for lag in 2..max_lag {
        low = low.min(curve[lag]);
        if lag < min_lag {
            continue;
        }
        let above_right = match ties {
            Ties::First => curve[lag] >= curve[lag + 1],
            Ties::Last => curve[lag] > curve[lag + 1],
        };
        if curve[lag] >= curve[lag - 1] && above_right && curve[lag] - low >= min_prominence {
            peaks.push((lag, curve[lag]));
        }
    }
    let top = peaks.iter().map(|p| p.1).fold(0.0, f64::max);
    peaks.into_iter().find(|p| p.1 >= 0.9 * top)
}

/// The median gap between consecutive `times` (sorted, at least two).
pub(super) fn median_gap(times: &[u64]) -> u64 {
    let mut gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_unstable();
    gaps[gaps.len() / 2]
}

/// Mean of step `lengths` and their coefficient of variation (from two on).
pub(super) fn mean_and_cv(lengths: &[f64]) -> (f64, Option<f64>) {
    let n = lengths.len() as f64;
    let mean = lengths.iter().sum::<f64>() / n;
    let var = lengths.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n;
    (mean, (lengths.len() >= 2).then(|| var.sqrt() / mean))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_peak_is_the_first_nearly_highest_prominent_one() {
        // Decay to a dip, a peak at 6, its multiple at 12 (higher by more
        // than a tenth: the period is 12), a bump
        // at 3 too low above the dip before it.
        let mut curve = vec![
            1.0, 0.8, 0.5, 0.55, 0.4, 0.3, 0.7, 0.3, 0.2, 0.25, 0.3, 0.5, 0.8,
        ];
        curve.extend([0.4; 8]);
        assert_eq!(period_peak(&curve, 2, 20, 0.2, Ties::Last), Some((12, 0.8)));
        curve[12] = 0.74;
        assert_eq!(period_peak(&curve, 2, 20, 0.2, Ties::Last), Some((6, 0.7)));
        // A plateau: the first of two equal values, or the last.
        curve[7] = 0.7;
        assert_eq!(period_peak(&curve, 2, 20, 0.2, Ties::First), Some((6, 0.7)));
        assert_eq!(period_peak(&curve, 2, 20, 0.2, Ties::Last), Some((7, 0.7)));
        assert_eq!(period_peak(&curve, 2, 20, 0.9, Ties::Last), None);
        assert_eq!(
            period_peak(&curve, 8, 20, 0.2, Ties::Last),
            Some((12, 0.74))
        );
    }

    #[test]
    fn parabola_and_step_statistics() {
        // Vertex of -(x - 5.25)^2 sampled at 4, 5, 6.
        let curve: Vec<f64> = (0..8).map(|x| -(x as f64 - 5.25).powi(2)).collect();
        assert!((parabola_offset(&curve, 5) - 0.25).abs() < 1e-12);
        assert_eq!(parabola_offset(&[1.0, 1.0, 1.0], 1), 0.0);
        let (mean, cv) = mean_and_cv(&[9.0, 11.0]);
        assert_eq!(mean, 10.0);
        assert!((cv.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(mean_and_cv(&[4.0]), (4.0, None));
    }

    #[test]
    fn fft_autocorrelation_equals_the_direct_sum() {
        let mut x = 7u64;
        let series: Vec<Vec<f64>> = (0..3)
            .map(|_| {
                (0..100)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (x >> 60) as f64
                    })
                    .collect()
            })
            .collect();
        let fast = autocorrelation(&series, 100);
        let slow = autocorrelation_direct(&series, 100);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }
}
