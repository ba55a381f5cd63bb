//! The network: a ReLU MLP whose hidden layers may be split into groups —
//! an ensemble of members that share the input and nothing else — with one
//! logit per member, averaged into the network's logit. Its seeded
//! initialisation and its safetensors form.
//!
//! A plain MLP is the one-member case (every layer dense). An ensemble of
//! `k` members is one dense first layer (each member owns a block of its
//! units) followed by grouped layers, whose weights are `k` independent
//! blocks: the whole is still one ReLU network, piecewise linear in its
//! inputs, so explanations stay exact.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;

/// One layer's affine map (the ReLU between layers is the network's).
#[derive(Debug, Clone)]
pub struct Layer {
    /// Dense: `(out, in)`. Grouped: `(groups, in / groups, out / groups)`.
    weight: Tensor,
    /// `(out,)`.
    bias: Tensor,
    groups: usize,
}

impl Layer {
    /// A dense layer from its `(out, in)` weights and `(out,)` bias.
    pub fn dense(weight: Tensor, bias: Tensor) -> Result<Self, ModelError> {
        let (out, _) = weight.dims2()?;
        if bias.dims() != [out] {
            return Err(ModelError::ShapeMismatch(format!(
                "a dense layer of {out} units with a bias of shape {:?}",
                bias.dims()
            )));
        }
        Ok(Layer {
            weight,
            bias,
            groups: 1,
        })
    }

    /// A grouped layer from its `(groups, in, out)` weights and
    /// `(groups · out,)` bias: group `g` maps input slice `g` to output
    /// slice `g`.
    pub fn grouped(weight: Tensor, bias: Tensor) -> Result<Self, ModelError> {
        let (groups, _, out) = weight.dims3()?;
        if bias.dims() != [groups * out] {
            return Err(ModelError::ShapeMismatch(format!(
                "a layer of {groups} groups of {out} units with a bias of shape {:?}",
                bias.dims()
            )));
        }
        Ok(Layer { weight, bias, groups })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// 1 for a dense layer.
    pub fn groups(&self) -> usize {
        self.groups
    }

    pub fn input_width(&self) -> usize {
        let dims = self.weight.dims();
        if self.groups == 1 {
            dims[1]
        } else {
            dims[0] * dims[1]
        }
    }

    pub fn output_width(&self) -> usize {
        self.bias.dims()[0]
    }

    /// Pre-activations `(rows, out)` of `(rows, in)` inputs.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.groups == 1 {
            return x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias);
        }
        let rows = x.dim(0)?;
        let (groups, inputs, outputs) = self.weight.dims3()?;
        // (rows, g·in) → (g, rows, in) × (g, in, out) → (g, rows, out) → (rows, g·out)
        x.reshape((rows, groups, inputs))?
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.weight)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((rows, groups * outputs))?
            .broadcast_add(&self.bias)
    }

    /// The gradient with respect to this layer's inputs, `(rows, in)`,
    /// given the gradient with respect to its pre-activations `(rows, out)`.
    pub fn input_gradient(&self, gradient: &Tensor) -> candle_core::Result<Tensor> {
        if self.groups == 1 {
            return gradient.matmul(&self.weight);
        }
        let rows = gradient.dim(0)?;
        let (groups, inputs, outputs) = self.weight.dims3()?;
        gradient
            .reshape((rows, groups, outputs))?
            .transpose(0, 1)?
            .contiguous()?
            .matmul(&self.weight.transpose(1, 2)?)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((rows, groups * inputs))
    }
}

/// An MLP `input → hidden… → members`; the network's logit is the mean of
/// its members' logits.
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Layer>,
    /// For an ensemble, the same weights laid out member by member, which
    /// scores rows with fewer copies (see [`Stacked`]).
    stacked: Option<Stacked>,
}

/// An ensemble's weights member by member: the first layer as
/// `(members, in, units)` and every later layer as it is, so rows go
/// through all members as one batched product per layer with no transposes
/// between layers. Performance: laying hidden units out row by row (as the
/// layers do) costs two transposed copies per grouped layer, which at 64 and
/// 256 rows a pass made the default ensemble 2.4–2.8× as dear as a single
/// 128-64 network instead of 1.4–1.6× (`cargo bench -p serval-model --bench
/// forward`).
#[derive(Debug, Clone)]
struct Stacked {
    /// Per layer, `(members, in, out)` and `(members, 1, out)`.
    layers: Vec<(Tensor, Tensor)>,
    /// The first layer as it is, for inputs wider than a member's units.
    first: Layer,
}

impl Stacked {
    fn of(layers: &[Layer]) -> candle_core::Result<Option<Self>> {
        let members = layers[layers.len() - 1].groups;
        if members == 1 || layers[0].groups != 1 || layers[1..].iter().any(|l| l.groups != members) {
            return Ok(None);
        }
        let first = &layers[0];
        let (units, inputs) = first.weight.dims2()?;
        let per_member = units / members;
        let mut stacked = vec![(
            first
                .weight
                .reshape((members, per_member, inputs))?
                .transpose(1, 2)?
                .contiguous()?,
            first.bias.reshape((members, 1, per_member))?,
        )];
        for layer in &layers[1..] {
            let outputs = layer.output_width() / members;
            stacked.push((layer.weight.clone(), layer.bias.reshape((members, 1, outputs))?));
        }
        Ok(Some(Stacked {
            layers: stacked,
            first: first.clone(),
        }))
    }

    /// Logits `(rows, 1)`: the mean over members.
    fn logits(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let (rows, inputs) = input.dims2()?;
        let (members, _, units) = self.layers[0].0.dims3()?;
        // Into member-major layout with the smaller copy: of the inputs,
        // once per member, or of the first layer's outputs.
        let (mut x, skip) = if inputs <= units {
            let x = input
                .unsqueeze(0)?
                .broadcast_as((members, rows, inputs))?
                .contiguous()?;
            (x, 0)
        } else {
            let pre = self.first.forward(input)?.relu()?;
            let x = pre
                .reshape((rows, members, units))?
                .transpose(0, 1)?
                .contiguous()?;
            (x, 1)
        };
        let last = self.layers.len() - 1;
        for (i, (weight, bias)) in self.layers.iter().enumerate().skip(skip) {
            x = x.matmul(weight)?.broadcast_add(bias)?;
            if i < last {
                x = x.relu()?;
            }
        }
        // (members, rows, 1) → (rows, 1)
        x.mean(0)
    }
}

/// Inputs are clamped to ±1e6 before the first layer: the encoder never
/// writes values beyond that, and encoded rows sent by callers (finite, but
/// up to ±3.4e38) would otherwise overflow to infinities whose sums, one
/// member's +∞ and another's −∞, make a NaN score.
const INPUT_LIMIT: f64 = 1e6;

fn weight_name(layer: usize) -> String {
    format!("layers.{layer}.weight")
}

fn bias_name(layer: usize) -> String {
    format!("layers.{layer}.bias")
}

/// Glorot-uniform weights for a layer of `fan_in → fan_out` units, `count`
/// of them, drawn from `rng`.
fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, count: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..count).map(|_| rng.random_range(-limit..limit)).collect()
}

impl Mlp {
    /// A network of these layers, checked: each layer reads what the one
    /// before writes, and the last writes one logit per member (one unit,
    /// or one unit per group).
    pub fn new(layers: Vec<Layer>) -> Result<Self, ModelError> {
        let shape = |what: String| ModelError::ShapeMismatch(what);
        let Some(last) = layers.last() else {
            return Err(shape("a network needs at least one layer".into()));
        };
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].output_width() != pair[1].input_width() {
                return Err(shape(format!(
                    "layer {i} writes {} values and layer {} reads {}",
                    pair[0].output_width(),
                    i + 1,
                    pair[1].input_width()
                )));
            }
        }
        if last.output_width() != last.groups {
            return Err(shape(format!(
                "the last layer writes {} values for {} member(s)",
                last.output_width(),
                last.groups
            )));
        }
        let stacked = Stacked::of(&layers)?;
        Ok(Mlp { layers, stacked })
    }

    /// A one-member network with Glorot-uniform weights and zero biases
    /// from a seeded generator, so a seed fixes it bit for bit.
    pub fn random(input_width: usize, hidden: &[usize], seed: u64) -> Result<Self, ModelError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layers = Vec::new();
        let mut fan_in = input_width;
        for &fan_out in hidden.iter().chain(std::iter::once(&1)) {
            let weight = Tensor::from_vec(
                glorot(&mut rng, fan_in, fan_out, fan_in * fan_out),
                (fan_out, fan_in),
                &Device::Cpu,
            )?;
            layers.push(Layer::dense(
                weight,
                Tensor::zeros(fan_out, DType::F32, &Device::Cpu)?,
            )?);
            fan_in = fan_out;
        }
        Mlp::new(layers)
    }

    /// An ensemble of `members` networks `input → hidden… → 1` sharing the
    /// input: one dense first layer of `members · hidden[0]` units, then
    /// grouped layers. Glorot-uniform weights (each member's own fan-in and
    /// fan-out) and zero biases from a seeded generator.
    pub fn random_ensemble(
        input_width: usize,
        hidden: &[usize],
        members: usize,
        seed: u64,
    ) -> Result<Self, ModelError> {
        if hidden.is_empty() || members == 0 {
            return Err(ModelError::ShapeMismatch(
                "an ensemble needs at least one hidden layer and one member".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let device = &Device::Cpu;
        let first = hidden[0];
        let mut layers = vec![Layer::dense(
            Tensor::from_vec(
                glorot(&mut rng, input_width, first, members * first * input_width),
                (members * first, input_width),
                device,
            )?,
            Tensor::zeros(members * first, DType::F32, device)?,
        )?];
        let mut fan_in = first;
        for &fan_out in hidden[1..].iter().chain(std::iter::once(&1)) {
            layers.push(Layer::grouped(
                Tensor::from_vec(
                    glorot(&mut rng, fan_in, fan_out, members * fan_in * fan_out),
                    (members, fan_in, fan_out),
                    device,
                )?,
                Tensor::zeros(members * fan_out, DType::F32, device)?,
            )?);
            fan_in = fan_out;
        }
        Mlp::new(layers)
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Members whose logits are averaged (1 for a plain MLP).
    pub fn members(&self) -> usize {
        self.layers[self.layers.len() - 1].groups
    }

    /// Width of the rows the network reads.
    pub fn input_width(&self) -> usize {
        self.layers[0].input_width()
    }

    /// Widths of the hidden layers (all members together).
    pub fn hidden_layers(&self) -> Vec<usize> {
        self.layers[..self.layers.len() - 1]
            .iter()
            .map(Layer::output_width)
            .collect()
    }

    /// Logits, shape `(rows, 1)`, for a `(rows, input_width)` tensor.
    pub fn logits(&self, input: &Tensor) -> candle_core::Result<Tensor> {
        let input = input.clamp(-INPUT_LIMIT, INPUT_LIMIT)?;
        if let Some(stacked) = &self.stacked {
            return stacked.logits(&input);
        }
        let pre = self.layers[0].forward(&input)?;
        self.logits_after_first_layer(&pre)
    }

    /// Logits, shape `(rows, 1)`, from the first layer's pre-activations
    /// (before its ReLU): the rest of the network after the first affine map.
    pub fn logits_after_first_layer(&self, pre_activations: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = pre_activations.clone();
        for layer in &self.layers[1..] {
            x = layer.forward(&x.relu()?)?;
        }
        if self.members() == 1 {
            Ok(x)
        } else {
            x.mean_keepdim(1)
        }
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

    /// Member `member` on its own, as a one-member network: its block of
    /// the first layer's units and its group of every later layer.
    pub fn member(&self, member: usize) -> Result<Mlp, ModelError> {
        let members = self.members();
        if member >= members {
            return Err(ModelError::ShapeMismatch(format!(
                "member {member} of a network of {members}"
            )));
        }
        if members == 1 {
            return Ok(self.clone());
        }
        let first = &self.layers[0];
        let units = first.output_width() / members;
        let mut layers = vec![Layer::dense(
            first.weight.narrow(0, member * units, units)?.contiguous()?,
            first.bias.narrow(0, member * units, units)?.contiguous()?,
        )?];
        for layer in &self.layers[1..] {
            let outputs = layer.output_width() / members;
            layers.push(Layer::dense(
                layer.weight.get(member)?.t()?.contiguous()?,
                layer.bias.narrow(0, member * outputs, outputs)?.contiguous()?,
            )?);
        }
        Mlp::new(layers)
    }

    /// The weights as safetensors bytes: `layers.N.weight` (rank 2 for a
    /// dense layer, rank 3 for a grouped one) and `layers.N.bias`.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ModelError> {
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            tensors.push((weight_name(i), layer.weight.clone()));
            tensors.push((bias_name(i), layer.bias.clone()));
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
        while let Some(weight) = tensors.remove(&weight_name(layers.len())) {
            let index = layers.len();
            let bias = tensors
                .remove(&bias_name(index))
                .ok_or_else(|| corrupt(format!("layer {index} has no bias")))?;
            if weight.dtype() != DType::F32 || bias.dtype() != DType::F32 {
                return Err(corrupt(format!("layer {index} is not f32")));
            }
            let layer = match weight.rank() {
                2 => Layer::dense(weight, bias),
                3 => Layer::grouped(weight, bias),
                rank => return Err(corrupt(format!("layer {index} has a weight of rank {rank}"))),
            }
            .map_err(|e| corrupt(format!("layer {index}: {e}")))?;
            layers.push(layer);
        }
        if !tensors.is_empty() {
            return Err(corrupt("unexpected layer layout".to_string()));
        }
        Mlp::new(layers).map_err(|e| corrupt(e.to_string()))
    }
}

pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three members of 4 → 6 → 2 → 1, with non-zero biases.
    fn ensemble(seed: u64) -> Mlp {
        let network = Mlp::random_ensemble(4, &[6, 2], 3, seed).unwrap();
        let layers = network
            .layers()
            .iter()
            .map(|layer| {
                let bias = (layer.bias().ones_like().unwrap() * 0.1).unwrap();
                let weight = layer.weight().clone();
                if layer.groups() == 1 {
                    Layer::dense(weight, bias)
                } else {
                    Layer::grouped(weight, bias)
                }
                .unwrap()
            })
            .collect();
        Mlp::new(layers).unwrap()
    }

    #[test]
    fn safetensors_round_trip_keeps_predictions() {
        for network in [Mlp::random(5, &[8, 4], 3).unwrap(), ensemble(4)] {
            let width = network.input_width();
            let rows: Vec<f32> = (0..3 * width).map(|i| i as f32 / 7.0 - 1.0).collect();
            let bytes = network.to_safetensors().unwrap();
            let loaded = Mlp::from_safetensors(&bytes).unwrap();
            assert_eq!(loaded.input_width(), width);
            assert_eq!(loaded.hidden_layers(), network.hidden_layers());
            assert_eq!(loaded.members(), network.members());
            assert_eq!(network.predict(&rows).unwrap(), loaded.predict(&rows).unwrap());
        }
    }

    #[test]
    fn same_seed_same_weights() {
        let a = Mlp::random(5, &[8], 11).unwrap();
        let b = Mlp::random(5, &[8], 11).unwrap();
        let c = Mlp::random(5, &[8], 12).unwrap();
        assert_eq!(a.to_safetensors().unwrap(), b.to_safetensors().unwrap());
        assert_ne!(a.to_safetensors().unwrap(), c.to_safetensors().unwrap());
    }

    #[test]
    fn an_ensembles_logit_is_the_mean_of_its_members_logits() {
        let network = ensemble(7);
        assert_eq!((network.members(), network.input_width()), (3, 4));
        assert_eq!(network.hidden_layers(), vec![18, 6]);
        let rows: Vec<f32> = (0..5 * 4).map(|i| ((i * 37) % 11) as f32 / 3.0 - 1.5).collect();
        let input = Tensor::from_slice(&rows, (5, 4), &Device::Cpu).unwrap();
        let together = network
            .logits(&input)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut mean = vec![0.0f32; 5];
        for m in 0..3 {
            let member = network.member(m).unwrap();
            assert_eq!((member.members(), member.hidden_layers()), (1, vec![6, 2]));
            let alone = member
                .logits(&input)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (sum, z) in mean.iter_mut().zip(alone) {
                *sum += z / 3.0;
            }
        }
        for (a, b) in together.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-5, "{together:?} vs {mean:?}");
        }
    }

    #[test]
    fn layers_that_do_not_fit_are_refused() {
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap();
        let first = Layer::dense(zeros(&[4, 3]), zeros(&[4])).unwrap();
        let wrong = Layer::dense(zeros(&[1, 5]), zeros(&[1])).unwrap();
        assert!(matches!(
            Mlp::new(vec![first.clone(), wrong]),
            Err(ModelError::ShapeMismatch(_))
        ));
        let two_outputs = Layer::dense(zeros(&[2, 4]), zeros(&[2])).unwrap();
        assert!(
            Mlp::new(vec![first, two_outputs]).is_err(),
            "two logits for one member"
        );
        assert!(Layer::dense(zeros(&[4, 3]), zeros(&[3])).is_err());
        assert!(Layer::grouped(zeros(&[2, 3, 1]), zeros(&[3])).is_err());
    }

    #[test]
    fn the_largest_finite_inputs_give_probabilities() {
        for network in [Mlp::random(4, &[8, 4], 1).unwrap(), ensemble(2)] {
            let rows = [
                f32::MAX,
                -f32::MAX,
                f32::MAX,
                -f32::MAX,
                -f32::MAX,
                f32::MAX,
                1.0,
                -1.0,
            ];
            for score in network.predict(&rows).unwrap() {
                assert!((0.0..=1.0).contains(&score), "{score}");
            }
        }
    }

    #[test]
    fn garbage_is_not_weights() {
        assert!(matches!(
            Mlp::from_safetensors(b"not safetensors"),
            Err(ModelError::CorruptWeights(_))
        ));
    }
}
