//! How well a clustering separates its points: the (weighted) silhouette
//! that chooses the number of swarms, and the distance it is built on.

use ndarray::{Array2, ArrayView1};

/// Euclidean distance of two feature rows.
pub fn distance(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Mean silhouette of a clustering (higher is better separated).
pub fn silhouette(data: &Array2<f64>, labels: &[usize], k: usize) -> f64 {
    weighted_silhouette(data, labels, k, &vec![1.0; data.nrows()])
}

/// Silhouette with a weight per point: a heavy point counts more both in
/// the mean and in the cluster distances (a function by its samples).
pub fn weighted_silhouette(data: &Array2<f64>, labels: &[usize], k: usize, weights: &[f64]) -> f64 {
    silhouette_of(&Distances::new(data), labels, k, weights)
}

/// Pairwise distances of the rows, computed once for every k tried.
pub(crate) struct Distances {
    n: usize,
    d: Vec<f64>,
}

impl Distances {
    pub(crate) fn new(data: &Array2<f64>) -> Distances {
        let n = data.nrows();
        let mut d = vec![0.0; n * n];
        for i in 0..n {
            for j in i + 1..n {
                let v = distance(data.row(i), data.row(j));
                d[i * n + j] = v;
                d[j * n + i] = v;
            }
        }
        Distances { n, d }
    }
}

pub(crate) fn silhouette_of(dist: &Distances, labels: &[usize], k: usize, weights: &[f64]) -> f64 {
    let n = dist.n;
    let mut total = 0.0;
    let mut weight = 0.0;
    let mut sum = vec![0.0; k];
    let mut mass = vec![0.0; k];
    for i in 0..n {
        sum.iter_mut().for_each(|v| *v = 0.0);
        mass.iter_mut().for_each(|v| *v = 0.0);
        let row = &dist.d[i * n..(i + 1) * n];
        for j in 0..n {
            if i != j {
                sum[labels[j]] += weights[j] * row[j];
                mass[labels[j]] += weights[j];
            }
        }
        weight += weights[i];
        let own = labels[i];
        if mass[own] <= 0.0 {
            continue; // singleton: silhouette 0
        }
        let a = sum[own] / mass[own];
        let b = (0..k)
            .filter(|&c| c != own && mass[c] > 0.0)
            .map(|c| sum[c] / mass[c])
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() {
            total += weights[i] * (b - a) / a.max(b).max(1e-12);
        }
    }
    if weight > 0.0 { total / weight } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_silhouette_follows_the_heavy_points() {
        // Two tight pairs and one far point: with the far point heavy, a
        // clustering that isolates it scores higher than with it light.
        let data = Array2::from_shape_vec((5, 1), vec![0.0, 0.1, 1.0, 1.1, 5.0]).unwrap();
        let labels = [0, 0, 1, 1, 1];
        let even = weighted_silhouette(&data, &labels, 2, &[1.0; 5]);
        let heavy_far = weighted_silhouette(&data, &labels, 2, &[1.0, 1.0, 1.0, 1.0, 10.0]);
        assert!(heavy_far < even, "{heavy_far} vs {even}");
        assert!((silhouette(&data, &labels, 2) - even).abs() < 1e-12);
    }
}
