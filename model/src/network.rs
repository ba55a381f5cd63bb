//! The network: a multi-layer perceptron with ReLU hidden layers and one
//! logit output, its seeded initialisation, and its safetensors form.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;

/// An MLP `input → hidden… → 1`; the output is a logit.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Linear>,
}

fn weight_name(layer: usize) -> String {
    format!("layers.{layer}.weight")
}

fn bias_name(layer: usize) -> String {
    format!("layers.{layer}.bias")
}

/// Trainable parameters of an [`Mlp`], in layer order (weight, bias).
pub struct MlpParameters {
    pub vars: Vec<Var>,
}

impl MlpParameters {
    /// Glorot-uniform weights and zero biases from a seeded generator, so a
    /// seed fixes the initial network bit for bit.
    pub fn init(input_width: usize, hidden: &[usize], seed: u64) -> Result<Self, ModelError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut vars = Vec::new();
        let mut fan_in = input_width;
        for &fan_out in hidden.iter().chain(std::iter::once(&1)) {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
            let weights: Vec<f32> = (0..fan_in * fan_out)
                .map(|_| rng.random_range(-limit..limit))
                .collect();
            vars.push(Var::from_tensor(&Tensor::from_vec(
                weights,
                (fan_out, fan_in),
                &Device::Cpu,
            )?)?);
            vars.push(Var::zeros(fan_out, DType::F32, &Device::Cpu)?);
            fan_in = fan_out;
        }
        Ok(MlpParameters { vars })
    }

    /// A network reading these parameters (it sees later updates).
    pub fn network(&self) -> Mlp {
        Mlp {
            layers: self
                .vars
                .chunks(2)
                .map(|pair| Linear::new(pair[0].as_tensor().clone(), Some(pair[1].as_tensor().clone())))
                .collect(),
        }
    }

    /// A network with these shapes and the given flattened values (one
    /// vector per parameter, in order).
    pub fn snapshot_of(&self, values: &[Vec<f32>]) -> Result<Mlp, ModelError> {
        let tensor = |i: usize| Tensor::from_slice(&values[i], self.vars[i].shape(), &Device::Cpu);
        let layers = (0..self.vars.len() / 2)
            .map(|l| Ok(Linear::new(tensor(2 * l)?, Some(tensor(2 * l + 1)?))))
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Mlp { layers })
    }

    /// A copy of the current values, detached from training.
    pub fn snapshot(&self) -> Result<Mlp, ModelError> {
        let layers = self
            .vars
            .chunks(2)
            .map(|pair| {
                Ok(Linear::new(
                    pair[0].as_tensor().copy()?,
                    Some(pair[1].as_tensor().copy()?),
                ))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Mlp { layers })
    }
}

impl Mlp {
    /// The layers, input first; the last one outputs the logit.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// Width of the rows the network reads.
    pub fn input_width(&self) -> usize {
        self.layers[0].weight().dim(1).unwrap_or(0)
    }

    /// Widths of the hidden layers.
    pub fn hidden_layers(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(|l| l.weight().dim(0).unwrap_or(0))
            .collect()
    }

    /// Logits, shape `(rows, 1)`, for a `(rows, input_width)` tensor.
    pub fn logits(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut x = input.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }

    /// Logits, shape `(rows, 1)`, from the first layer's pre-activations
    /// (before its ReLU), shape `(rows, first hidden width)`: the rest of
    /// the network after the first linear map.
    pub fn logits_after_first_layer(&self, pre_activations: &Tensor) -> candle_core::Result<Tensor> {
        let last = self.layers.len() - 1;
        if last == 0 {
            return Ok(pre_activations.clone());
        }
        let mut x = pre_activations.relu()?;
        for (i, layer) in self.layers.iter().enumerate().skip(1) {
            x = layer.forward(&x)?;
            if i < last {
                x = x.relu()?;
            }
        }
        Ok(x)
    }

    /// Probabilities for `rows` row-major rows of `input_width` values.
    pub fn predict(&self, rows: &[f32]) -> Result<Vec<f32>, ModelError> {
        let width = self.input_width();
        if width == 0 || !rows.len().is_multiple_of(width) {
            return Err(ModelError::ShapeMismatch(format!(
                "input of {} values is not a whole number of rows of {width}",
                rows.len()
            )));
        }
        let input = Tensor::from_slice(rows, (rows.len() / width, width), &Device::Cpu)?;
        let logits = self.logits(&input)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(logits.into_iter().map(sigmoid).collect())
    }

    /// The weights as safetensors bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ModelError> {
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            tensors.push((weight_name(i), layer.weight().clone()));
            if let Some(bias) = layer.bias() {
                tensors.push((bias_name(i), bias.clone()));
            }
        }
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), None).map_err(|e| {
            ModelError::Compute(candle_core::Error::Msg(format!("cannot serialise weights: {e}")))
        })
    }

    /// Reads weights written by [`Mlp::to_safetensors`], checking shapes.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ModelError> {
        let corrupt = |what: String| ModelError::CorruptWeights(what);
        let mut tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(bytes, &Device::Cpu).map_err(|e| corrupt(e.to_string()))?;
        let mut layers = Vec::new();
        let mut fan_in = None;
        while let Some(weight) = tensors.remove(&weight_name(layers.len())) {
            let bias = tensors
                .remove(&bias_name(layers.len()))
                .ok_or_else(|| corrupt(format!("layer {} has no bias", layers.len())))?;
            let (out, inp) = weight.dims2().map_err(|e| corrupt(e.to_string()))?;
            if fan_in.is_some_and(|f| f != inp) || bias.dims() != [out] || weight.dtype() != DType::F32 {
                return Err(corrupt(format!("layer {} has inconsistent shapes", layers.len())));
            }
            fan_in = Some(out);
            layers.push(Linear::new(weight, Some(bias)));
        }
        if layers.is_empty() || fan_in != Some(1) || !tensors.is_empty() {
            return Err(corrupt("unexpected layer layout".to_string()));
        }
        Ok(Mlp { layers })
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_keeps_predictions() {
        let params = MlpParameters::init(5, &[8, 4], 3).unwrap();
        let mlp = params.snapshot().unwrap();
        let rows: Vec<f32> = (0..15).map(|i| i as f32 / 7.0 - 1.0).collect();
        let bytes = mlp.to_safetensors().unwrap();
        let loaded = Mlp::from_safetensors(&bytes).unwrap();
        assert_eq!(loaded.input_width(), 5);
        assert_eq!(loaded.hidden_layers(), vec![8, 4]);
        assert_eq!(mlp.predict(&rows).unwrap(), loaded.predict(&rows).unwrap());
    }

    #[test]
    fn same_seed_same_weights() {
        let a = MlpParameters::init(5, &[8], 11).unwrap().snapshot().unwrap();
        let b = MlpParameters::init(5, &[8], 11).unwrap().snapshot().unwrap();
        let c = MlpParameters::init(5, &[8], 12).unwrap().snapshot().unwrap();
        assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
        assert_ne!(a.to_safetensors().unwrap(), c.to_safetensors().unwrap());
    }

    #[test]
    fn garbage_is_not_weights() {
        assert!(Mlp::from_safetensors(b"not safetensors").is_err());
    }
}
