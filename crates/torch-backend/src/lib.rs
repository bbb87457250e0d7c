//! libtorch image models for zoo, through tch.
//!
//! This is the only crate that links libtorch. It turns FiftyOne-style
//! deployment configs into runnable models; so far it owns device selection
//! ([`DeviceSpec`]) and the runtime report ([`RuntimeInfo`]).
//!
//! ```no_run
//! use zoo_torch_backend::DeviceSpec;
//! let device = "cpu".parse::<DeviceSpec>().unwrap().resolve().unwrap();
//! assert_eq!(device, tch::Device::Cpu);
//! ```

mod device;

pub use device::{DeviceError, DeviceSpec, RuntimeInfo};
