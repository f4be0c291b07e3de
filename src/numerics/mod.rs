//! Numerical building blocks below every model: the row-major matrix views and products
//! ([`linalg`]), LayerNorm forward/backward ([`layer_norm`]), softmax and log-sum-exp
//! ([`softmax`]), generic over f32 and f64 where both are used. The
//! fused kernels' SIMD twins are tested against these.

pub mod layer_norm;
pub mod linalg;
pub mod softmax;
