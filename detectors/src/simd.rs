//! One body compiled for the widest vector instructions the CPU has.
//!
//! The x86-64 baseline has two-wide SSE2 only; a hot loop written with fixed-size arrays is
//! compiled again with AVX-512F and with AVX2 enabled and the widest the CPU supports is picked
//! at run time. Rust never fuses a multiply and an add on its own and the basic operations
//! (and the square root) are correctly rounded, so every version gives the same bits. Written
//! as a macro because the three versions differ only in their `target_feature` attribute,
//! which no function can take as a parameter.

/// `dispatch!(fn name(args) -> ret => body)` defines `name`, which calls `body` (an
/// `#[inline(always)]` function of the same signature) compiled for AVX-512F or AVX2 when the
/// CPU has them, and as it is otherwise.
macro_rules! dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU was just found to support AVX-512F, all the function needs
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU was just found to support AVX2, all the function needs
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
