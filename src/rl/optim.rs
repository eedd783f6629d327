//! Adam as the project trains with it (candle_nn's `AdamW` with weight decay 0, operation for
//! operation), with its state in the open: a checkpoint holds the moments and the step count
//! beside the weights, so a resumed run continues exactly as an uninterrupted one would, where
//! fresh moments would give the first steps after a resume a different size and direction.

use super::{Error, Result, at};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct Adam {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Updates taken so far (the bias corrections depend on it).
    steps: u32,
    /// Each parameter by its name, with its first and second moments.
    vars: Vec<Moments>,
}

struct Moments {
    name: String,
    var: Var,
    m: Var,
    v: Var,
}

impl Adam {
    /// candle_nn's defaults: β₁ 0.9, β₂ 0.999, ε 1e-8.
    pub fn new(params: &VarMap, lr: f64) -> candle_core::Result<Adam> {
        let data = params.data().lock().expect("the policy's parameters are not poisoned");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let vars = names
            .into_iter()
            .map(|name| {
                let var = data[name].clone();
                let zeros = || Var::zeros(var.shape(), var.dtype(), var.device());
                Ok(Moments { name: name.clone(), m: zeros()?, v: zeros()?, var })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, steps: 0, vars })
    }

    pub fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let scale_m = 1.0 / (1.0 - b1.powi(self.steps as i32));
        let scale_v = 1.0 / (1.0 - b2.powi(self.steps as i32));
        for p in &self.vars {
            let Some(g) = grads.get(&p.var) else { continue };
            let m = ((p.m.as_tensor() * b1)? + (g * (1.0 - b1))?)?;
            let v = ((p.v.as_tensor() * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m * scale_m)? / (((&v * scale_v)?.sqrt()? + self.eps)?))?;
            let theta = (p.var.as_tensor() - (update * self.lr)?)?;
            p.m.set(&m)?;
            p.v.set(&v)?;
            p.var.set(&theta)?;
        }
        Ok(())
    }

    /// Where the state of the checkpoint at `weights` goes: `step_N.optim.safetensors`.
    pub fn path_beside(weights: &Path) -> PathBuf {
        weights.with_extension("optim.safetensors")
    }

    /// Writes the moments and the step count (safetensors), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for p in &self.vars {
            tensors.insert(format!("m.{}", p.name), p.m.as_tensor().clone());
            tensors.insert(format!("v.{}", p.name), p.v.as_tensor().clone());
        }
        let steps = Tensor::new(&[self.steps], &Device::Cpu)?;
        tensors.insert("steps".into(), steps);
        let bytes = safetensors::serialize(&tensors, None).map_err(at(path))?;
        crate::atomic::write_atomic(path, &bytes).map_err(at(path))
    }

    /// Takes the state `save` wrote for these same parameters; anything missing or misshapen is
    /// an error (the state of another model), never a partial load.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let here = |e: &dyn std::fmt::Display| Error::msg(format!("{}: {e}", path.display()));
        let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| here(&e))?;
        let get = |name: &str, like: &Var| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| here(&format!("no tensor {name}")))?;
            if t.dims() != like.dims() || t.dtype() != like.dtype() {
                return Err(here(&format!("{name} has shape {:?}, the policy wants {:?}", t.dims(), like.dims())));
            }
            Ok(t.clone())
        };
        for p in &self.vars {
            p.m.set(&get(&format!("m.{}", p.name), &p.var)?).map_err(|e| here(&e))?;
            p.v.set(&get(&format!("v.{}", p.name), &p.var)?).map_err(|e| here(&e))?;
        }
        let steps = tensors.get("steps").filter(|t| t.dtype() == DType::U32 && t.elem_count() == 1).ok_or_else(|| here(&"no step count"))?;
        self.steps = steps.flatten_all().and_then(|t| t.to_vec1::<u32>()).map_err(|e| here(&e))?[0];
        Ok(())
    }
}
