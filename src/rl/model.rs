//! The policy: a small decoder-only character transformer (candle, CPU) whose forward pass can
//! return every layer's and head's attention, so its own rollouts can be traced.
//!
//! Written out plainly, and with two of candle's traps avoided: `softmax_last_dim` and the fused
//! layer norm are forward-only ops that silently drop gradients, so attention uses the composed
//! `ops::softmax` and the layer norm is written here (a test checks every parameter gets a
//! gradient).

use super::{Error, at};
use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder, VarMap, embedding, linear};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub vocab: usize,
    pub context: usize,
    pub d: usize,
    pub layers: usize,
    pub heads: usize,
}

/// The `model` every trace and run of the project's policy is labelled with starts with this.
pub const MODEL_PREFIX: &str = "flowtracer-policy-";

impl Config {
    /// The `model` label of traces and runs: `flowtracer-policy-{layers}x{d}`.
    pub fn model_name(&self) -> String {
        format!("{MODEL_PREFIX}{}x{}", self.layers, self.d)
    }

    /// The default policy: 3 layers, d = 96, 4 heads, context 96 (about 0.34 M parameters).
    pub fn small() -> Config {
        Config { vocab: super::task::vocab_size(), context: 96, d: 96, layers: 3, heads: 4 }
    }

    /// For tests that must run in seconds.
    pub fn tiny() -> Config {
        Config { vocab: super::task::vocab_size(), context: 96, d: 16, layers: 2, heads: 2 }
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            w: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            b: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        xn.broadcast_mul(&self.w)?.broadcast_add(&self.b)
    }
}

struct Block {
    ln1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// Keys and values `[B,H,T,dh]` of the positions already run, one pair per layer.
#[derive(Default)]
pub struct Cache {
    kv: Vec<(Tensor, Tensor)>,
}

impl Cache {
    pub fn len(&self) -> usize {
        self.kv.first().map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Policy {
    pub cfg: Config,
    pub varmap: VarMap,
    tok: Embedding,
    pos: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Linear,
}

impl Policy {
    pub fn new(cfg: Config) -> Result<Policy> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let d = cfg.d;
        let blocks = (0..cfg.layers)
            .map(|l| {
                let vb = vb.pp(format!("h{l}"));
                Ok(Block {
                    ln1: LayerNorm::new(d, vb.pp("ln1"))?,
                    qkv: linear(d, 3 * d, vb.pp("qkv"))?,
                    proj: linear(d, d, vb.pp("proj"))?,
                    ln2: LayerNorm::new(d, vb.pp("ln2"))?,
                    fc1: linear(d, 4 * d, vb.pp("fc1"))?,
                    fc2: linear(4 * d, d, vb.pp("fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Policy {
            tok: embedding(cfg.vocab, d, vb.pp("tok"))?,
            pos: embedding(cfg.context, d, vb.pp("pos"))?,
            ln_f: LayerNorm::new(d, vb.pp("ln_f"))?,
            head: linear(d, cfg.vocab, vb.pp("head"))?,
            blocks,
            varmap,
            cfg,
        })
    }

    /// Logits `[B,T,V]` and, when asked, each layer's attention `[B,H,T,T]` (rows sum to 1).
    pub fn forward(&self, ids: &Tensor, want_attention: bool) -> Result<(Tensor, Vec<Tensor>)> {
        self.run(ids, None, None, want_attention)
    }

    /// Logits for `ids` `[B,t]` as the positions after those already in `cache`, whose keys and
    /// values it appends: sampling then costs one position per token instead of the whole prefix.
    /// `key_bias` `[B,1,1,context]` is added to every attention score of a key position; −1e9
    /// blocks it (the probe's masking).
    pub fn step(&self, ids: &Tensor, cache: &mut Cache, key_bias: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.run(ids, Some(cache), key_bias, false)?.0)
    }

    /// The whole of `ids` `[B,T]` in one pass with `key_bias` `[B,1,1,context]` on every attention
    /// score of a key position (−1e9 hides it): what-if scoring sees the policy exactly as the
    /// hidden regeneration does, attention included when asked.
    pub fn forward_biased(&self, ids: &Tensor, key_bias: Option<&Tensor>, want_attention: bool) -> Result<(Tensor, Vec<Tensor>)> {
        self.run(ids, None, key_bias, want_attention)
    }

    fn run(&self, ids: &Tensor, mut cache: Option<&mut Cache>, key_bias: Option<&Tensor>, want_attention: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let (b, t) = ids.dims2()?;
        let (d, nh) = (self.cfg.d, self.cfg.heads);
        let dh = d / nh;
        let p0 = cache.as_ref().map_or(0, |c| c.len());
        let total = p0 + t;
        if total > self.cfg.context {
            candle_core::bail!("{total} positions do not fit the policy's context of {}", self.cfg.context);
        }
        let positions = Tensor::arange(p0 as u32, total as u32, &Device::Cpu)?;
        let mut x = self.tok.forward(ids)?.broadcast_add(&self.pos.forward(&positions)?)?;
        // Query i sits at position p0 + i and sees keys up to it.
        let mask: Vec<f32> = (0..t * total).map(|j| if j % total > p0 + j / total { -1e9 } else { 0.0 }).collect();
        let mut mask = Tensor::from_vec(mask, (1, 1, t, total), &Device::Cpu)?;
        if let Some(bias) = key_bias {
            mask = mask.broadcast_add(&bias.narrow(3, 0, total)?)?;
        }
        let mut attentions = Vec::new();
        for (l, blk) in self.blocks.iter().enumerate() {
            let h = blk.ln1.forward(&x)?;
            let qkv = blk.qkv.forward(&h)?.reshape((b, t, 3, nh, dh))?.permute((2, 0, 3, 1, 4))?;
            let (q, mut k, mut v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
            if let Some(c) = cache.as_deref_mut() {
                if let Some((pk, pv)) = c.kv.get(l) {
                    k = Tensor::cat(&[pk, &k], 2)?;
                    v = Tensor::cat(&[pv, &v], 2)?;
                }
                if l < c.kv.len() {
                    c.kv[l] = (k.clone(), v.clone());
                } else {
                    c.kv.push((k.clone(), v.clone()));
                }
            }
            let scores = (q.matmul(&k.t()?.contiguous()?)? / (dh as f64).sqrt())?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let y = att.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, t, d))?;
            x = (x + blk.proj.forward(&y)?)?;
            let m = blk.fc2.forward(&blk.fc1.forward(&blk.ln2.forward(&x)?)?.gelu()?)?;
            x = (x + m)?;
            if want_attention {
                attentions.push(att);
            }
        }
        Ok((self.head.forward(&self.ln_f.forward(&x)?)?, attentions))
    }

    pub fn parameters(&self) -> usize {
        self.varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Writes the weights (safetensors) atomically over what is at `path`: a run's own
    /// checkpoints. (A file a user names goes through [`Policy::to_safetensors`] and
    /// [`crate::atomic::write_new`], which never replaces one.)
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, &self.to_safetensors()?).map_err(at(path))
    }

    /// The weights as a safetensors file's bytes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let vars = self.varmap.data().lock().map_err(|_| Error::msg("the policy's parameters are poisoned"))?;
        Ok(safetensors::serialize(vars.iter().map(|(name, var)| (name, var.as_tensor())), None)?)
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(at(path))?;
        self.load_bytes(&bytes).map_err(|e| Error::msg(format!("{}: cannot load the policy: {e}", path.display())))
    }

    /// Sets every parameter from safetensors bytes; a missing or misshapen tensor is an error
    /// (a checkpoint of another configuration), not a silent partial load.
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?;
        let vars = self.varmap.data().lock().map_err(|_| Error::msg("the policy's parameters are poisoned"))?;
        for (name, var) in vars.iter() {
            let t = tensors.get(name).ok_or_else(|| Error::msg(format!("no tensor {name}")))?;
            if t.dims() != var.dims() {
                return Err(Error::msg(format!("{name} has shape {:?}, the policy wants {:?}", t.dims(), var.dims())));
            }
            var.set(t).map_err(|e| Error::msg(format!("{name}: {e}")))?;
        }
        Ok(())
    }
}
