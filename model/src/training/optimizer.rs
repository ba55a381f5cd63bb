//! Adam, updating each parameter in one pass over plain slices (with bias
//! correction, plus an optional L2 penalty added to the gradient).
//!
//! candle's optimiser builds about a dozen intermediate tensors per
//! parameter per step; for the small networks trained here that bookkeeping
//! costs more than the arithmetic, so the update is one loop per parameter.

pub struct Adam {
    values: Vec<Vec<f32>>,
    first_moment: Vec<Vec<f32>>,
    second_moment: Vec<Vec<f32>>,
    step: i32,
    pub learning_rate: f64,
    l2: f32,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-7;

impl Adam {
    /// An optimiser starting from `values`.
    pub fn new(values: Vec<Vec<f32>>, learning_rate: f64, l2: f64) -> Self {
        let zeros: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        Adam {
            first_moment: zeros.clone(),
            second_moment: zeros,
            values,
            step: 0,
            learning_rate,
            l2: l2 as f32,
        }
    }

    /// Applies one update from `gradients` (one slice per parameter, in the
    /// order of the values).
    pub fn step(&mut self, gradients: &[Vec<f32>]) {
        self.step += 1;
        let correction1 = 1.0 - BETA1.powi(self.step);
        let correction2 = 1.0 - BETA2.powi(self.step);
        let rate = self.learning_rate as f32 * correction2.sqrt() / correction1;
        let l2 = self.l2;
        for (i, gradient) in gradients.iter().enumerate() {
            // Zipped iterators: no bounds checks, so the loop vectorises.
            for (((value, m), v), g) in self.values[i]
                .iter_mut()
                .zip(self.first_moment[i].iter_mut())
                .zip(self.second_moment[i].iter_mut())
                .zip(gradient)
            {
                let g = g + l2 * *value;
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *value -= rate * *m / (v.sqrt() + EPSILON);
            }
        }
    }

    /// The current values.
    pub fn values(&self) -> &[Vec<f32>] {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_moves_each_value_by_the_rate_against_its_gradient() {
        let mut adam = Adam::new(vec![vec![1.0, -1.0], vec![0.5]], 0.1, 0.0);
        adam.step(&[vec![2.0, -3.0], vec![0.0]]);
        let values = adam.values();
        assert!((values[0][0] - 0.9).abs() < 1e-6, "{values:?}");
        assert!((values[0][1] + 0.9).abs() < 1e-6, "{values:?}");
        assert_eq!(values[1][0], 0.5);
    }

    #[test]
    fn it_minimises_a_quadratic() {
        let mut adam = Adam::new(vec![vec![3.0]], 0.1, 0.0);
        for _ in 0..500 {
            let x = adam.values()[0][0];
            adam.step(&[vec![2.0 * (x - 1.0)]]);
        }
        assert!((adam.values()[0][0] - 1.0).abs() < 1e-2);
    }
}
