//! Adam, updating each parameter in one pass over plain slices.
//!
//! candle's optimiser builds about a dozen intermediate tensors per
//! parameter per step; for the small networks trained here that bookkeeping
//! costs more than the arithmetic, so the update runs as one loop per
//! parameter instead (same formula: Adam with bias correction, plus an
//! optional L2 penalty added to the gradient).

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::ModelError;

pub struct Adam {
    parameters: Vec<Var>,
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
    pub fn new(parameters: Vec<Var>, learning_rate: f64, l2: f64) -> Result<Self, ModelError> {
        let values = parameters
            .iter()
            .map(|p| p.as_tensor().flatten_all()?.to_vec1::<f32>())
            .collect::<Result<Vec<_>, _>>()?;
        let zeros: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
        Ok(Adam {
            parameters,
            first_moment: zeros.clone(),
            second_moment: zeros,
            values,
            step: 0,
            learning_rate,
            l2: l2 as f32,
        })
    }

    /// Applies one update from `gradients`.
    pub fn step(&mut self, gradients: &GradStore) -> Result<(), ModelError> {
        self.step += 1;
        let correction1 = 1.0 - BETA1.powi(self.step);
        let correction2 = 1.0 - BETA2.powi(self.step);
        let rate = self.learning_rate as f32 * correction2.sqrt() / correction1;
        for (i, parameter) in self.parameters.iter().enumerate() {
            let Some(gradient) = gradients.get(parameter) else {
                continue;
            };
            let gradient = gradient.flatten_all()?.to_vec1::<f32>()?;
            let l2 = self.l2;
            // Zipped iterators: no bounds checks, so the loop vectorises.
            for (((value, m), v), g) in self.values[i]
                .iter_mut()
                .zip(self.first_moment[i].iter_mut())
                .zip(self.second_moment[i].iter_mut())
                .zip(&gradient)
            {
                let g = g + l2 * *value;
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *value -= rate * *m / (v.sqrt() + EPSILON);
            }
            let values = &self.values[i];
            parameter.set(&Tensor::from_slice(
                values,
                parameter.shape(),
                parameter.device(),
            )?)?;
        }
        Ok(())
    }

    /// The current values, as plain slices (for keeping the best epoch).
    pub fn values(&self) -> &[Vec<f32>] {
        &self.values
    }
}
