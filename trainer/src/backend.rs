//! Run-time choice of the burn backend and device.
//!
//! The default build has only `flex`, burn's pure-Rust CPU backend, so the demo runs anywhere. The `tch` feature adds
//! LibTorch (CPU or CUDA), the production training backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, Tensor, TensorData};

use crate::{Error, Result};

/// A burn backend that revgen can train and generate on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn-flex: pure Rust, CPU only, always built.
    Flex,
    /// burn-tch: LibTorch 2.9.0, CPU or CUDA; needs the `tch` feature.
    Tch,
}

impl Backend {
    const NAMES: &'static str = "flex, tch";

    /// Whether this binary was built with the backend.
    pub fn is_built(self) -> bool {
        match self {
            Backend::Flex => true,
            Backend::Tch => cfg!(feature = "tch"),
        }
    }

    /// The device named by `spec` (`cpu`, `cuda`, `cuda:N`) on this backend, with autodiff, for training.
    pub fn device(self, spec: &str) -> Result<Device> {
        Ok(self.inference_device(spec)?.autodiff())
    }

    /// The device named by `spec` without autodiff: no graph is recorded, and fused kernels (LibTorch's SDPA
    /// attention) are used. For scoring and generation.
    pub fn inference_device(self, spec: &str) -> Result<Device> {
        match (self, parse_device(spec)) {
            (Backend::Flex, Some(DeviceSpec::Cpu)) => Ok(Device::flex()),
            (Backend::Tch, Some(spec)) => tch_device(spec),
            (backend, _) => Err(Error::UnknownDevice { backend: backend.name(), device: spec.to_owned() }),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Tch => "tch",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "flex" => Ok(Backend::Flex),
            "tch" | "libtorch" => Ok(Backend::Tch),
            other => Err(Error::UnknownBackend(other.to_owned(), Self::NAMES)),
        }
    }
}

/// What `revgen backends` reports for one backend.
#[derive(Clone, Debug)]
pub struct BackendReport {
    pub backend: Backend,
    pub built: bool,
    /// Device specs this backend can use on this machine.
    pub devices: Vec<String>,
    /// Outcome of a small forward/backward check on the backend's CPU device.
    pub check: Result<(), String>,
}

/// The pure-Rust backend's primitive inside `tensor`. The backend extensions' flex halves compute with burn's
/// tensor API on flex tensors, so what they get out is a flex tensor.
pub(crate) fn flex_primitive<const D: usize>(
    tensor: Tensor<D>,
) -> burn::backend::tensor::FloatTensor<burn::backend::Flex> {
    tensor.try_into_primitive::<burn::backend::Flex>().expect("flex tensors in, flex tensors out")
}

/// Every backend, whether it is built, which devices it sees, and whether a tiny autodiff step runs on it. The
/// check loads the backend's native libraries, so a broken LibTorch install shows up here rather than mid-run.
pub fn probe() -> Vec<BackendReport> {
    [Backend::Flex, Backend::Tch]
        .into_iter()
        .map(|backend| {
            let built = backend.is_built();
            let devices = if built { available_devices(backend) } else { Vec::new() };
            let check = if built { check(backend) } else { Err(Error::BackendNotBuilt(backend.name()).to_string()) };
            BackendReport { backend, built, devices, check }
        })
        .collect()
}

fn available_devices(backend: Backend) -> Vec<String> {
    let mut devices = vec!["cpu".to_owned()];
    if backend == Backend::Tch {
        devices.extend((0..cuda_device_count()).map(|i| format!("cuda:{i}")));
    }
    devices
}

#[cfg(feature = "tch")]
fn cuda_device_count() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

#[cfg(not(feature = "tch"))]
fn cuda_device_count() -> usize {
    0
}

/// d/dx sum(x * x) at x = [1, 2, 3] must be [2, 4, 6].
fn check(backend: Backend) -> Result<(), String> {
    let device = backend.device("cpu").map_err(|e| e.to_string())?;
    // x: [3]
    let x = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0], [3]), &device).require_grad();
    let grads = (x.clone() * x.clone()).sum().backward();
    let grad = x.grad(&grads).ok_or("no gradient for x")?;
    let grad: Vec<f32> = grad.into_data().try_to_vec().map_err(|e| format!("{e:?}"))?;
    if grad == [2.0, 4.0, 6.0] { Ok(()) } else { Err(format!("gradient of sum(x*x) is {grad:?}, expected [2, 4, 6]")) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

fn parse_device(spec: &str) -> Option<DeviceSpec> {
    match spec {
        "cpu" => Some(DeviceSpec::Cpu),
        "cuda" => Some(DeviceSpec::Cuda(0)),
        _ => spec.strip_prefix("cuda:")?.parse().ok().map(DeviceSpec::Cuda),
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream after 0.22; it is still our production CUDA backend.
fn tch_device(spec: DeviceSpec) -> Result<Device> {
    Ok(match spec {
        DeviceSpec::Cpu => Device::libtorch(),
        DeviceSpec::Cuda(index) => Device::libtorch_cuda(index),
    })
}

#[cfg(not(feature = "tch"))]
fn tch_device(_spec: DeviceSpec) -> Result<Device> {
    Err(Error::BackendNotBuilt("tch"))
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::activation::gelu;

    use super::*;

    /// Loss and gradients of one forward/backward step of a small fixed-weight layer.
    struct Step {
        loss: f32,
        weight_grad: Vec<f32>,
        bias_grad: Vec<f32>,
    }

    /// A deterministic, non-symmetric value table so that a transposed or misplaced element changes the result.
    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * scale).collect()
    }

    fn step(device: &Device) -> Step {
        let mut layer: Linear = LinearConfig::new(8, 5).init(device);
        // weight: [d_in=8, d_out=5], bias: [5]
        let weight = Tensor::from_data(TensorData::new(ramp(40, 0.05), [8, 5]), device).require_grad();
        let bias = Tensor::from_data(TensorData::new(ramp(5, 0.1), [5]), device).require_grad();
        layer.weight = layer.weight.map(|_| weight);
        layer.bias = layer.bias.map(|b| b.map(|_| bias));
        // x: [batch=4, d_in=8]
        let x = Tensor::<2>::from_data(TensorData::new(ramp(32, 0.3), [4, 8]), device);
        let y = gelu(layer.forward(x)); // [4, 5]
        let loss = y.powi_scalar(2).mean(); // [1]
        let grads = loss.backward();
        let weight_grad = layer.weight.grad(&grads).expect("weight grad");
        let bias_grad = layer.bias.as_ref().and_then(|b| b.grad(&grads)).expect("bias grad");
        Step {
            loss: loss.into_data().try_to_vec::<f32>().expect("f32 loss")[0],
            weight_grad: weight_grad.into_data().try_to_vec().expect("f32 grad"),
            bias_grad: bias_grad.into_data().try_to_vec().expect("f32 grad"),
        }
    }

    #[cfg(feature = "tch")]
    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths differ");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn flex_step_has_finite_nonzero_gradients() {
        let s = step(&Backend::Flex.device("cpu").unwrap());
        assert!(s.loss.is_finite() && s.loss > 0.0, "loss {}", s.loss);
        assert!(s.weight_grad.iter().all(|g| g.is_finite()));
        assert!(s.weight_grad.iter().filter(|g| g.abs() > 1e-6).count() > 30, "{:?}", s.weight_grad);
        assert!(s.bias_grad.iter().all(|g| g.abs() > 1e-6), "{:?}", s.bias_grad);
    }

    #[test]
    fn flex_gradient_matches_finite_difference() {
        // d loss / d bias[0] by central difference on a plain (no-autodiff) forward, against autodiff.
        let device = Backend::Flex.device("cpu").unwrap();
        let analytic = step(&device).bias_grad[0];
        let eps = 1e-2_f32;
        let loss_at = |shift: f32| {
            let x = Tensor::<2>::from_data(TensorData::new(ramp(32, 0.3), [4, 8]), &device);
            let w = Tensor::<2>::from_data(TensorData::new(ramp(40, 0.05), [8, 5]), &device);
            let mut bias = ramp(5, 0.1);
            bias[0] += shift;
            let b = Tensor::<1>::from_data(TensorData::new(bias, [5]), &device);
            let y = gelu(x.matmul(w) + b.unsqueeze::<2>());
            y.powi_scalar(2).mean().into_data().try_to_vec::<f32>().unwrap()[0]
        };
        let numeric = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
        assert!((numeric - analytic).abs() < 1e-3, "numeric {numeric} vs autodiff {analytic}");
    }

    #[cfg(feature = "tch")]
    #[test]
    fn tch_cpu_step_matches_flex() {
        let flex = step(&Backend::Flex.device("cpu").unwrap());
        let tch = step(&Backend::Tch.device("cpu").unwrap());
        assert_close(&[flex.loss], &[tch.loss], "loss");
        assert_close(&flex.weight_grad, &tch.weight_grad, "weight grad");
        assert_close(&flex.bias_grad, &tch.bias_grad, "bias grad");
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn tch_without_feature_names_the_feature() {
        let err = Backend::Tch.device("cpu").unwrap_err().to_string();
        assert!(err.contains("--features tch"), "{err}");
    }

    #[test]
    fn device_specs() {
        assert_eq!(parse_device("cuda:1"), Some(DeviceSpec::Cuda(1)));
        assert_eq!(parse_device("cuda"), Some(DeviceSpec::Cuda(0)));
        assert_eq!(parse_device("gpu"), None);
        assert!(Backend::Flex.device("cuda:0").is_err());
        assert_eq!("tch".parse::<Backend>().unwrap(), Backend::Tch);
        assert!("ndarray".parse::<Backend>().unwrap_err().to_string().contains("flex, tch"));
    }
}
