//! The training form of an ensemble of `k` ReLU networks that share their
//! input (`input → hidden… → 1` each): parameters as plain slices, and one
//! hand-written forward and backward pass for a batch of all members.
//!
//! candle does the matrix products, on the training's device (the CPU, or
//! a CUDA GPU: each product's operands are copied there and its result
//! back, a first step that leaves the element-wise work on the CPU); the
//! element-wise work (bias, ReLU,
//! dropout, and their backward pass) runs as single loops over slices,
//! because for networks this small the per-operation tensor bookkeeping of
//! an autograd graph costs more than the arithmetic. Categorical inputs
//! arrive as the index of their hot one-hot slot: the first layer adds that
//! slot's row of weights instead of multiplying by a mostly-zero row.
//!
//! Layout of the parameters (index into [`Parameters::values`]):
//! `0` the first layer's weights for the numeric inputs, `(numeric, k·h1)`;
//! `1` its bias, `(k·h1)`; then for each deeper hidden layer `l` a weight
//! `(k, h_{l-1}, h_l)` and a bias `(k, h_l)`; then the output weights
//! `(k, h_last)` and biases `(k)`; last, the first layer's weights for the
//! one-hot slots, `(slots, k·h1)`.

use candle_core::{Device, Tensor};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::ModelError;
use crate::network::{Layer, Mlp};

/// The shape of an ensemble and of its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Numeric (dense) inputs per row.
    pub numeric: usize,
    /// One-hot slots over all categorical columns.
    pub slots: usize,
    /// Categorical columns: hot slots per row.
    pub categorical: usize,
    pub members: usize,
    /// Hidden widths of each member.
    pub hidden: Vec<usize>,
}

impl Shape {
    fn units(&self) -> usize {
        self.members * self.hidden[0]
    }

    /// Index of the output weights in the parameter list.
    fn output(&self) -> usize {
        2 * self.hidden.len()
    }

    fn embedding(&self) -> usize {
        self.output() + 2
    }
}

/// Glorot-uniform draws for a `fan_in → fan_out` map.
fn glorot(rng: &mut ChaCha8Rng, fan_in: usize, fan_out: usize, count: usize) -> Vec<f32> {
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    (0..count).map(|_| rng.random_range(-limit..limit)).collect()
}

/// The parameters, one slice each, in the layout of the module docs.
pub type Parameters = Vec<Vec<f32>>;

/// Glorot-uniform weights (each member's own fan-in: all numeric inputs and
/// one slot per categorical column) and zero biases, from a seeded
/// generator.
pub fn init(shape: &Shape, seed: u64) -> Parameters {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let k = shape.members;
    let h1 = shape.hidden[0];
    let fan_in = shape.numeric + shape.categorical;
    let mut values = vec![
        glorot(&mut rng, fan_in, h1, shape.numeric * k * h1),
        vec![0.0; k * h1],
    ];
    for pair in shape.hidden.windows(2) {
        values.push(glorot(&mut rng, pair[0], pair[1], k * pair[0] * pair[1]));
        values.push(vec![0.0; k * pair[1]]);
    }
    let last = shape.hidden[shape.hidden.len() - 1];
    values.push(glorot(&mut rng, last, 1, k * last));
    values.push(vec![0.0; k]);
    values.push(glorot(&mut rng, fan_in, h1, shape.slots * k * h1));
    values
}

/// Member `member` of `parameters` alone, as a one-member ensemble of the
/// same shape.
pub fn member(parameters: &[Vec<f32>], shape: &Shape, member: usize) -> Parameters {
    let k = shape.members;
    let h1 = shape.hidden[0];
    let columns = |matrix: &[f32], rows: usize| -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * h1);
        for row in matrix.chunks(k * h1).take(rows) {
            out.extend_from_slice(&row[member * h1..(member + 1) * h1]);
        }
        out
    };
    let block = |values: &[f32]| -> Vec<f32> {
        let size = values.len() / k;
        values[member * size..(member + 1) * size].to_vec()
    };
    let mut values = vec![
        columns(&parameters[0], shape.numeric),
        parameters[1][member * h1..(member + 1) * h1].to_vec(),
    ];
    values.extend(parameters[2..shape.embedding()].iter().map(|p| block(p)));
    values.push(columns(&parameters[shape.embedding()], shape.slots));
    values
}

/// The serving network of `parameters`: one dense first layer over the
/// encoded row (numeric inputs and one-hot slots back in the encoder's
/// order), then grouped layers. `input_kind[j]` is `Ok(i)` when encoded
/// input `j` is numeric input `i`, `Err(s)` when it is one-hot slot `s`.
pub fn network(
    parameters: &[Vec<f32>],
    shape: &Shape,
    input_kind: &[Result<usize, usize>],
) -> Result<Mlp, ModelError> {
    let device = &Device::Cpu;
    let k = shape.members;
    let units = shape.units();
    let width = input_kind.len();
    // (units, width): unit u's weight for encoded input j.
    let mut first = vec![0f32; units * width];
    for (j, kind) in input_kind.iter().enumerate() {
        let (matrix, row) = match *kind {
            Ok(i) => (&parameters[0], i),
            Err(s) => (&parameters[shape.embedding()], s),
        };
        for (u, &w) in matrix[row * units..(row + 1) * units].iter().enumerate() {
            first[u * width + j] = w;
        }
    }
    let mut layers = vec![Layer::dense(
        Tensor::from_vec(first, (units, width), device)?,
        Tensor::from_slice(&parameters[1], units, device)?,
    )?];
    for (l, pair) in shape.hidden.windows(2).enumerate() {
        layers.push(Layer::grouped(
            Tensor::from_slice(&parameters[2 + 2 * l], (k, pair[0], pair[1]), device)?,
            Tensor::from_slice(&parameters[3 + 2 * l], k * pair[1], device)?,
        )?);
    }
    let last = shape.hidden[shape.hidden.len() - 1];
    layers.push(Layer::grouped(
        Tensor::from_slice(&parameters[shape.output()], (k, last, 1), device)?,
        Tensor::from_slice(&parameters[shape.output() + 1], k, device)?,
    )?);
    Mlp::new(layers)
}

/// A batch's inputs: `rows` rows of numeric values and hot slots.
pub struct Batch<'a> {
    pub rows: usize,
    /// `(rows, numeric)`.
    pub numeric: &'a [f32],
    /// `(rows, categorical)`.
    pub slots: &'a [u32],
}

/// What the backward pass needs of the forward pass.
pub struct Activations {
    /// Per hidden layer, `(k, rows, h)`: outputs after ReLU and dropout.
    outputs: Vec<Vec<f32>>,
    /// Per hidden layer, `(k, rows, h)`: 0 where a unit was off (ReLU or
    /// dropout), else the dropout scale.
    gates: Vec<Vec<f32>>,
}

/// `a (g, m, inner) × b (g, inner, n)`, either operand transposed in
/// place, as one batched candle product on `device`.
#[allow(clippy::too_many_arguments)]
fn product(
    device: &Device,
    a: &[f32],
    b: &[f32],
    groups: usize,
    m: usize,
    inner: usize,
    n: usize,
    a_transposed: bool,
    b_transposed: bool,
) -> Result<Vec<f32>, ModelError> {
    let left = if a_transposed {
        Tensor::from_slice(a, (groups, inner, m), device)?.transpose(1, 2)?
    } else {
        Tensor::from_slice(a, (groups, m, inner), device)?
    };
    let right = if b_transposed {
        Tensor::from_slice(b, (groups, n, inner), device)?.transpose(1, 2)?
    } else {
        Tensor::from_slice(b, (groups, inner, n), device)?
    };
    Ok(left.matmul(&right)?.flatten_all()?.to_vec1::<f32>()?)
}

/// ReLU and inverted dropout in place, recording each unit's gate. Masks
/// come from one random byte per unit (kept when the byte is at least
/// `round(256 · dropout)`).
fn activate(values: &mut [f32], gates: &mut [f32], dropout: f64, rng: &mut ChaCha8Rng) {
    if dropout > 0.0 {
        let threshold = (dropout * 256.0).round().min(255.0) as u8;
        let scale = (1.0 / (1.0 - dropout)) as f32;
        let mut bytes = vec![0u8; values.len()];
        rng.fill_bytes(&mut bytes);
        for ((x, gate), &byte) in values.iter_mut().zip(gates.iter_mut()).zip(&bytes) {
            let keep = f32::from(u8::from(byte >= threshold && *x > 0.0)) * scale;
            *gate = keep;
            *x *= keep;
        }
    } else {
        for (x, gate) in values.iter_mut().zip(gates.iter_mut()) {
            let on = f32::from(u8::from(*x > 0.0));
            *gate = on;
            *x *= on;
        }
    }
}

/// Logits `(k, rows)` of every member for `batch`, with dropout drawn from
/// `rng` (none when `dropout` is 0), and what the backward pass needs; the
/// matrix products run on `device`.
pub fn forward(
    device: &Device,
    parameters: &[Vec<f32>],
    shape: &Shape,
    batch: &Batch<'_>,
    dropout: f64,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<f32>, Activations), ModelError> {
    let (rows, k) = (batch.rows, shape.members);
    let h1 = shape.hidden[0];
    let units = shape.units();
    let values = parameters;
    let mut first = if shape.numeric > 0 {
        product(
            device,
            batch.numeric,
            &values[0],
            1,
            rows,
            shape.numeric,
            units,
            false,
            false,
        )?
    } else {
        vec![0.0; rows * units]
    };
    let embedding = &values[shape.embedding()];
    for (r, pre) in first.chunks_mut(units).enumerate() {
        for &slot in &batch.slots[r * shape.categorical..(r + 1) * shape.categorical] {
            let row = &embedding[slot as usize * units..(slot as usize + 1) * units];
            for (a, w) in pre.iter_mut().zip(row) {
                *a += w;
            }
        }
        for (a, b) in pre.iter_mut().zip(&values[1]) {
            *a += b;
        }
    }
    let mut gate = vec![0.0; rows * units];
    activate(&mut first, &mut gate, dropout, rng);
    // (rows, k·h1) → (k, rows, h1), the layout of every deeper layer.
    let by_member = |values: &[f32]| -> Vec<f32> {
        let mut out = vec![0.0; rows * units];
        for r in 0..rows {
            for m in 0..k {
                out[(m * rows + r) * h1..(m * rows + r + 1) * h1]
                    .copy_from_slice(&values[r * units + m * h1..r * units + (m + 1) * h1]);
            }
        }
        out
    };
    let mut outputs = vec![by_member(&first)];
    let mut gates = vec![by_member(&gate)];
    for (l, pair) in shape.hidden.windows(2).enumerate() {
        let (inputs, width) = (pair[0], pair[1]);
        let mut pre = product(
            device,
            &outputs[l],
            &values[2 + 2 * l],
            k,
            rows,
            inputs,
            width,
            false,
            false,
        )?;
        let bias = &values[3 + 2 * l];
        for (block, pre) in pre.chunks_mut(rows * width).enumerate() {
            for unit in pre.chunks_mut(width) {
                for (a, b) in unit.iter_mut().zip(&bias[block * width..(block + 1) * width]) {
                    *a += b;
                }
            }
        }
        let mut gate = vec![0.0; pre.len()];
        activate(&mut pre, &mut gate, dropout, rng);
        outputs.push(pre);
        gates.push(gate);
    }
    let last = shape.hidden[shape.hidden.len() - 1];
    let top = &outputs[outputs.len() - 1];
    let (weights, biases) = (&values[shape.output()], &values[shape.output() + 1]);
    let mut logits = vec![0.0f32; k * rows];
    for m in 0..k {
        let w = &weights[m * last..(m + 1) * last];
        for r in 0..rows {
            let a = &top[(m * rows + r) * last..(m * rows + r + 1) * last];
            logits[m * rows + r] = a.iter().zip(w).map(|(x, w)| x * w).sum::<f32>() + biases[m];
        }
    }
    Ok((logits, Activations { outputs, gates }))
}

/// Gradients (in the parameter layout) of `Σ slopes · logits`, where
/// `slopes` `(k, rows)` is the loss's derivative with respect to each
/// member's logit of each row. The matrix products run on `device`.
pub fn backward(
    device: &Device,
    parameters: &[Vec<f32>],
    shape: &Shape,
    batch: &Batch<'_>,
    activations: &Activations,
    slopes: &[f32],
) -> Result<Vec<Vec<f32>>, ModelError> {
    let (rows, k) = (batch.rows, shape.members);
    let values = parameters;
    let hidden = &shape.hidden;
    let depth = hidden.len();
    let last = hidden[depth - 1];
    let mut gradients: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();

    // Output layer.
    let top = &activations.outputs[depth - 1];
    let top_gate = &activations.gates[depth - 1];
    let mut upstream = vec![0.0f32; k * rows * last];
    for m in 0..k {
        let w = &values[shape.output()][m * last..(m + 1) * last];
        for r in 0..rows {
            let slope = slopes[m * rows + r];
            gradients[shape.output() + 1][m] += slope;
            let at = (m * rows + r) * last;
            for j in 0..last {
                gradients[shape.output()][m * last + j] += slope * top[at + j];
                upstream[at + j] = slope * w[j] * top_gate[at + j];
            }
        }
    }
    // Deeper hidden layers, last first: `upstream` holds the gradient of
    // the pre-activations of hidden layer l + 1.
    for l in (0..depth - 1).rev() {
        let (inputs, width) = (hidden[l], hidden[l + 1]);
        let bias = &mut gradients[3 + 2 * l];
        for (block, pre) in upstream.chunks(rows * width).enumerate() {
            for unit in pre.chunks(width) {
                for (g, u) in bias[block * width..(block + 1) * width].iter_mut().zip(unit) {
                    *g += u;
                }
            }
        }
        gradients[2 + 2 * l] = product(
            device,
            &activations.outputs[l],
            &upstream,
            k,
            inputs,
            rows,
            width,
            true,
            false,
        )?;
        let mut below = product(
            device,
            &upstream,
            &values[2 + 2 * l],
            k,
            rows,
            width,
            inputs,
            false,
            true,
        )?;
        for (g, gate) in below.iter_mut().zip(&activations.gates[l]) {
            *g *= gate;
        }
        upstream = below;
    }
    // First layer: back to (rows, k·h1).
    let h1 = hidden[0];
    let units = shape.units();
    let mut first = vec![0.0f32; rows * units];
    for m in 0..k {
        for r in 0..rows {
            first[r * units + m * h1..r * units + (m + 1) * h1]
                .copy_from_slice(&upstream[(m * rows + r) * h1..(m * rows + r + 1) * h1]);
        }
    }
    for row in first.chunks(units) {
        for (g, u) in gradients[1].iter_mut().zip(row) {
            *g += u;
        }
    }
    if shape.numeric > 0 {
        gradients[0] = product(
            device,
            batch.numeric,
            &first,
            1,
            shape.numeric,
            rows,
            units,
            true,
            false,
        )?;
    }
    let embedding = &mut gradients[shape.embedding()];
    for (r, row) in first.chunks(units).enumerate() {
        for &slot in &batch.slots[r * shape.categorical..(r + 1) * shape.categorical] {
            for (g, u) in embedding[slot as usize * units..(slot as usize + 1) * units]
                .iter_mut()
                .zip(row)
            {
                *g += u;
            }
        }
    }
    Ok(gradients)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            numeric: 3,
            slots: 5,
            categorical: 2,
            members: 3,
            hidden: vec![4, 3],
        }
    }

    fn batch_values(rows: usize) -> (Vec<f32>, Vec<u32>) {
        let numeric: Vec<f32> = (0..rows * 3)
            .map(|i| ((i * 37) % 13) as f32 / 6.0 - 1.0)
            .collect();
        // Column 0 uses slots 0-2, column 1 slots 3-4.
        let slots: Vec<u32> = (0..rows)
            .flat_map(|r| [(r % 3) as u32, 3 + (r % 2) as u32])
            .collect();
        (numeric, slots)
    }

    fn loss(parameters: &[Vec<f32>], shape: &Shape, batch: &Batch<'_>, weights: &[f32]) -> f32 {
        let (logits, _) = forward(
            &Device::Cpu,
            parameters,
            shape,
            batch,
            0.0,
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
        logits.iter().zip(weights).map(|(z, w)| z * w).sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let shape = shape();
        let mut parameters = init(&shape, 3);
        for (i, values) in parameters.iter_mut().enumerate() {
            for (j, v) in values.iter_mut().enumerate() {
                *v += ((i * 7 + j * 3) % 5) as f32 / 50.0; // non-zero biases
            }
        }
        let (numeric, slots) = batch_values(6);
        let batch = Batch {
            rows: 6,
            numeric: &numeric,
            slots: &slots,
        };
        let slopes: Vec<f32> = (0..3 * 6).map(|i| ((i * 5) % 7) as f32 / 7.0 - 0.4).collect();
        let (_, activations) = forward(
            &Device::Cpu,
            &parameters,
            &shape,
            &batch,
            0.0,
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
        let gradients = backward(&Device::Cpu, &parameters, &shape, &batch, &activations, &slopes).unwrap();
        let h = 1e-3f32;
        let mut failures = Vec::new();
        for i in 0..parameters.len() {
            for j in (0..parameters[i].len()).step_by(3) {
                let mut up = parameters.clone();
                up[i][j] += h;
                let mut down = parameters.clone();
                down[i][j] -= h;
                let numeric =
                    (loss(&up, &shape, &batch, &slopes) - loss(&down, &shape, &batch, &slopes)) / (2.0 * h);
                let analytic = gradients[i][j];
                if (numeric - analytic).abs() >= 2e-2 * (1.0 + analytic.abs()) {
                    failures.push(format!(
                        "parameter {i}[{j}]: numeric {numeric} vs analytic {analytic}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn the_serving_network_scores_as_the_mean_of_the_members() {
        let shape = shape();
        let parameters = init(&shape, 9);
        let (numeric, slots) = batch_values(4);
        let batch = Batch {
            rows: 4,
            numeric: &numeric,
            slots: &slots,
        };
        let (logits, _) = forward(
            &Device::Cpu,
            &parameters,
            &shape,
            &batch,
            0.0,
            &mut ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap();
        // Encoded row: slot 0, numeric 0, slots 1-2, numeric 1-2, slots 3-4.
        let kinds = [Err(0), Ok(0), Err(1), Err(2), Ok(1), Ok(2), Err(3), Err(4)];
        let mut encoded = Vec::new();
        for r in 0..4 {
            for kind in kinds {
                encoded.push(match kind {
                    Ok(i) => numeric[r * 3 + i],
                    Err(s) => f32::from(u8::from(slots[r * 2..r * 2 + 2].contains(&(s as u32)))),
                });
            }
        }
        let network = network(&parameters, &shape, &kinds).unwrap();
        assert_eq!(network.members(), 3);
        let input = Tensor::from_slice(&encoded, (4, 8), &Device::Cpu).unwrap();
        let served = network
            .logits(&input)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for r in 0..4 {
            let mean = (0..3).map(|m| logits[m * 4 + r]).sum::<f32>() / 3.0;
            assert!(
                (served[r] - mean).abs() < 1e-5,
                "row {r}: {} vs {mean}",
                served[r]
            );
        }
        // Each member alone is the same member of the serving network.
        for m in 0..3 {
            let alone = member(&parameters, &shape, m);
            let single = Shape {
                members: 1,
                ..shape.clone()
            };
            let (member_logits, _) = forward(
                &Device::Cpu,
                &alone,
                &single,
                &batch,
                0.0,
                &mut ChaCha8Rng::seed_from_u64(0),
            )
            .unwrap();
            let from_network = network
                .member(m)
                .unwrap()
                .logits(&input)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for r in 0..4 {
                assert!((member_logits[r] - logits[m * 4 + r]).abs() < 1e-5);
                assert!((from_network[r] - logits[m * 4 + r]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn dropout_keeps_about_the_asked_share_and_scales_it() {
        let mut values = vec![1.0f32; 100_000];
        let mut gates = vec![0.0f32; values.len()];
        activate(&mut values, &mut gates, 0.2, &mut ChaCha8Rng::seed_from_u64(1));
        let kept = gates.iter().filter(|&&g| g > 0.0).count() as f64 / gates.len() as f64;
        assert!((kept - 0.8).abs() < 0.01, "{kept}");
        assert!(values.iter().all(|&v| v == 0.0 || (v - 1.25).abs() < 1e-6));
    }
}
