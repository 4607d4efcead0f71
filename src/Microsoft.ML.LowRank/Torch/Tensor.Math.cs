using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    // Math ops on tensors: arithmetic (with broadcasting and type promotion), unary functions, in-place updates,
    // comparisons, reductions and basic linear algebra. Scalar arguments are doubles; an integral-valued scalar acts
    // as an integer scalar (like Python's `t + 1`), so integer tensors keep their dtype, while a fractional one
    // (like `t + 0.5`) promotes them to the default floating type.
    public partial class Tensor
    {
        // ---------------- helpers ----------------

        internal static int MathRoundingMode(string? rounding_mode) => rounding_mode switch
        {
            null => 0,
            "trunc" => 1,
            "floor" => 2,
            _ => throw new ArgumentException($"rounding_mode must be null, \"trunc\" or \"floor\", got \"{rounding_mode}\"", nameof(rounding_mode)),
        };

        internal static int MathDtype(ScalarType? dtype) => dtype.HasValue ? (int)dtype.Value : -1;

        internal static IntPtr MathOptionalPtr(Tensor? t) => t is null ? IntPtr.Zero : t.Handle.DangerousGetHandle();

        // ---------------- elementwise binary ----------------

        /// <summary>Adds <paramref name="alpha"/> × <paramref name="other"/> (broadcast).</summary>
        /// <param name="other">The tensor to add.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>A new tensor.</returns>
        public Tensor add(Tensor other, double alpha = 1) => Wrap(NativeMethods.lr_math_add(Handle, other.Handle, alpha));

        /// <summary>Adds <paramref name="alpha"/> × <paramref name="other"/>.</summary>
        /// <param name="other">The scalar to add.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>A new tensor.</returns>
        public Tensor add(double other, double alpha = 1) => Wrap(NativeMethods.lr_math_add_scalar(Handle, other, alpha));

        /// <summary>Subtracts <paramref name="alpha"/> × <paramref name="other"/> (broadcast).</summary>
        /// <param name="other">The tensor to subtract.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>A new tensor.</returns>
        public Tensor sub(Tensor other, double alpha = 1) => Wrap(NativeMethods.lr_math_sub(Handle, other.Handle, alpha));

        /// <summary>Subtracts <paramref name="alpha"/> × <paramref name="other"/>.</summary>
        /// <param name="other">The scalar to subtract.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>A new tensor.</returns>
        public Tensor sub(double other, double alpha = 1) => Wrap(NativeMethods.lr_math_sub_scalar(Handle, other, alpha));

        /// <summary>Multiplies elementwise (broadcast).</summary>
        /// <param name="other">The other factor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor mul(Tensor other) => Wrap(NativeMethods.lr_math_mul(Handle, other.Handle));

        /// <summary>Multiplies by a scalar.</summary>
        /// <param name="other">The factor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor mul(double other) => Wrap(NativeMethods.lr_math_mul_scalar(Handle, other));

        /// <summary>Divides elementwise (broadcast). Without a rounding mode this is true division (integer inputs give
        /// a floating result); "trunc" rounds the quotient toward zero, "floor" rounds it down.</summary>
        /// <param name="other">The divisor.</param>
        /// <param name="rounding_mode">null, "trunc" or "floor".</param>
        /// <returns>A new tensor.</returns>
        public Tensor div(Tensor other, string? rounding_mode = null) => Wrap(NativeMethods.lr_math_div(Handle, other.Handle, MathRoundingMode(rounding_mode)));

        /// <summary>Divides by a scalar.</summary>
        /// <param name="other">The divisor.</param>
        /// <param name="rounding_mode">null, "trunc" or "floor".</param>
        /// <returns>A new tensor.</returns>
        public Tensor div(double other, string? rounding_mode = null) => Wrap(NativeMethods.lr_math_div_scalar(Handle, other, MathRoundingMode(rounding_mode)));

        /// <summary>Raises elementwise to the power <paramref name="exponent"/> (broadcast).</summary>
        /// <param name="exponent">The exponents.</param>
        /// <returns>A new tensor.</returns>
        public Tensor pow(Tensor exponent) => Wrap(NativeMethods.lr_math_pow(Handle, exponent.Handle));

        /// <summary>Raises elementwise to a scalar power.</summary>
        /// <param name="exponent">The exponent.</param>
        /// <returns>A new tensor.</returns>
        public Tensor pow(double exponent) => Wrap(NativeMethods.lr_math_pow_scalar(Handle, exponent));

        /// <summary>Python-style remainder: the result has the sign of the divisor.</summary>
        /// <param name="other">The divisor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor remainder(Tensor other) => Wrap(NativeMethods.lr_math_remainder(Handle, other.Handle));

        /// <summary>Python-style remainder by a scalar: the result has the sign of the divisor.</summary>
        /// <param name="other">The divisor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor remainder(double other) => Wrap(NativeMethods.lr_math_remainder_scalar(Handle, other));

        /// <summary>C-style remainder: the result has the sign of the dividend.</summary>
        /// <param name="other">The divisor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor fmod(Tensor other) => Wrap(NativeMethods.lr_math_fmod(Handle, other.Handle));

        /// <summary>C-style remainder by a scalar: the result has the sign of the dividend.</summary>
        /// <param name="other">The divisor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor fmod(double other) => Wrap(NativeMethods.lr_math_fmod_scalar(Handle, other));

        /// <summary>Elementwise maximum (broadcast; NaN propagates).</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor maximum(Tensor other) => Wrap(NativeMethods.lr_math_maximum(Handle, other.Handle));

        /// <summary>Elementwise maximum with a scalar (NaN propagates).</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A new tensor.</returns>
        public Tensor maximum(double other) => Wrap(NativeMethods.lr_math_maximum_scalar(Handle, other));

        /// <summary>Elementwise minimum (broadcast; NaN propagates).</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor minimum(Tensor other) => Wrap(NativeMethods.lr_math_minimum(Handle, other.Handle));

        /// <summary>Elementwise minimum with a scalar (NaN propagates).</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A new tensor.</returns>
        public Tensor minimum(double other) => Wrap(NativeMethods.lr_math_minimum_scalar(Handle, other));

        /// <summary>The angle atan2(this, other) in radians, elementwise (broadcast).</summary>
        /// <param name="other">The x coordinates (this tensor holds y).</param>
        /// <returns>A new tensor.</returns>
        public Tensor atan2(Tensor other) => Wrap(NativeMethods.lr_math_atan2(Handle, other.Handle));

        /// <summary>The angle atan2(this, other) in radians, with a scalar x coordinate.</summary>
        /// <param name="other">The x coordinate.</param>
        /// <returns>A new tensor.</returns>
        public Tensor atan2(double other) => Wrap(NativeMethods.lr_math_atan2_scalar(Handle, other));

        // ---------------- operators ----------------

        /// <summary>Elementwise sum (broadcast).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator +(Tensor left, Tensor right) => left.add(right);

        /// <summary>Adds a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator +(Tensor left, double right) => left.add(right);

        /// <summary>Adds a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator +(double left, Tensor right) => right.add(left);

        /// <summary>Elementwise difference (broadcast).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator -(Tensor left, Tensor right) => left.sub(right);

        /// <summary>Subtracts a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator -(Tensor left, double right) => left.sub(right);

        /// <summary>A scalar minus a tensor.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator -(double left, Tensor right) => Wrap(NativeMethods.lr_math_rsub_scalar(right.Handle, left, 1));

        /// <summary>Negation.</summary>
        /// <param name="operand">The operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator -(Tensor operand) => operand.neg();

        /// <summary>Elementwise product (broadcast).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator *(Tensor left, Tensor right) => left.mul(right);

        /// <summary>Multiplies by a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator *(Tensor left, double right) => left.mul(right);

        /// <summary>Multiplies by a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator *(double left, Tensor right) => right.mul(left);

        /// <summary>Elementwise true division (broadcast).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator /(Tensor left, Tensor right) => left.div(right);

        /// <summary>Divides by a scalar (true division).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator /(Tensor left, double right) => left.div(right);

        /// <summary>A scalar divided by a tensor (true division).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator /(double left, Tensor right) => Wrap(NativeMethods.lr_math_rdiv_scalar(left, right.Handle, 0));

        /// <summary>Python-style remainder (broadcast).</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator %(Tensor left, Tensor right) => left.remainder(right);

        /// <summary>Python-style remainder by a scalar.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator %(Tensor left, double right) => left.remainder(right);

        /// <summary>Python-style remainder of a scalar by a tensor.</summary>
        /// <param name="left">Left operand.</param>
        /// <param name="right">Right operand.</param>
        /// <returns>A new tensor.</returns>
        public static Tensor operator %(double left, Tensor right) => Wrap(NativeMethods.lr_math_rremainder_scalar(left, right.Handle));

        // ---------------- unary ----------------

        /// <summary>The negation, -x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor neg() => Wrap(NativeMethods.lr_math_neg(Handle));

        /// <summary>The absolute value |x|.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor abs() => Wrap(NativeMethods.lr_math_abs(Handle));

        /// <summary>The exponential e^x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor exp() => Wrap(NativeMethods.lr_math_exp(Handle));

        /// <summary>2^x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor exp2() => Wrap(NativeMethods.lr_math_exp2(Handle));

        /// <summary>The natural logarithm.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor log() => Wrap(NativeMethods.lr_math_log(Handle));

        /// <summary>The base-2 logarithm.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor log2() => Wrap(NativeMethods.lr_math_log2(Handle));

        /// <summary>The base-10 logarithm.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor log10() => Wrap(NativeMethods.lr_math_log10(Handle));

        /// <summary>log(1 + x), accurate for small x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor log1p() => Wrap(NativeMethods.lr_math_log1p(Handle));

        /// <summary>e^x - 1, accurate for small x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor expm1() => Wrap(NativeMethods.lr_math_expm1(Handle));

        /// <summary>The square root.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor sqrt() => Wrap(NativeMethods.lr_math_sqrt(Handle));

        /// <summary>The reciprocal square root 1/sqrt(x).</summary>
        /// <returns>A new tensor.</returns>
        public Tensor rsqrt() => Wrap(NativeMethods.lr_math_rsqrt(Handle));

        /// <summary>The square x*x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor square() => Wrap(NativeMethods.lr_math_square(Handle));

        /// <summary>The sine.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor sin() => Wrap(NativeMethods.lr_math_sin(Handle));

        /// <summary>The cosine.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor cos() => Wrap(NativeMethods.lr_math_cos(Handle));

        /// <summary>The tangent.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor tan() => Wrap(NativeMethods.lr_math_tan(Handle));

        /// <summary>The hyperbolic tangent.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor tanh() => Wrap(NativeMethods.lr_math_tanh(Handle));

        /// <summary>The logistic sigmoid 1/(1+e^-x).</summary>
        /// <returns>A new tensor.</returns>
        public Tensor sigmoid() => Wrap(NativeMethods.lr_math_sigmoid(Handle));

        /// <summary>The rectified linear unit max(x, 0).</summary>
        /// <returns>A new tensor.</returns>
        public Tensor relu() => Wrap(NativeMethods.lr_math_relu(Handle));

        /// <summary>The sign: -1, 0 or 1.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor sign() => Wrap(NativeMethods.lr_math_sign(Handle));

        /// <summary>Rounds down to an integer value.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor floor() => Wrap(NativeMethods.lr_math_floor(Handle));

        /// <summary>Rounds up to an integer value.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor ceil() => Wrap(NativeMethods.lr_math_ceil(Handle));

        /// <summary>Rounds to the nearest integer value, halves to even.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor round() => Wrap(NativeMethods.lr_math_round(Handle));

        /// <summary>Rounds toward zero to an integer value.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor trunc() => Wrap(NativeMethods.lr_math_trunc(Handle));

        /// <summary>The reciprocal 1/x.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor reciprocal() => Wrap(NativeMethods.lr_math_reciprocal(Handle));

        /// <summary>The error function.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor erf() => Wrap(NativeMethods.lr_math_erf(Handle));

        /// <summary>Logical NOT (nonzero is true), as a bool tensor.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor logical_not() => Wrap(NativeMethods.lr_math_logical_not(Handle));

        /// <summary>True where the element is NaN.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor isnan() => Wrap(NativeMethods.lr_math_isnan(Handle));

        /// <summary>True where the element is +inf or -inf.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor isinf() => Wrap(NativeMethods.lr_math_isinf(Handle));

        /// <summary>True where the element is neither NaN nor infinite.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor isfinite() => Wrap(NativeMethods.lr_math_isfinite(Handle));

        /// <summary>In place: the negation, -x.</summary>
        /// <returns>This tensor.</returns>
        public Tensor neg_()
        {
            CheckStatus(NativeMethods.lr_math_neg_(Handle));
            return this;
        }

        /// <summary>In place: the absolute value |x|.</summary>
        /// <returns>This tensor.</returns>
        public Tensor abs_()
        {
            CheckStatus(NativeMethods.lr_math_abs_(Handle));
            return this;
        }

        /// <summary>In place: the exponential e^x.</summary>
        /// <returns>This tensor.</returns>
        public Tensor exp_()
        {
            CheckStatus(NativeMethods.lr_math_exp_(Handle));
            return this;
        }

        /// <summary>In place: the natural logarithm.</summary>
        /// <returns>This tensor.</returns>
        public Tensor log_()
        {
            CheckStatus(NativeMethods.lr_math_log_(Handle));
            return this;
        }

        /// <summary>In place: the square root.</summary>
        /// <returns>This tensor.</returns>
        public Tensor sqrt_()
        {
            CheckStatus(NativeMethods.lr_math_sqrt_(Handle));
            return this;
        }

        /// <summary>In place: the reciprocal square root 1/sqrt(x).</summary>
        /// <returns>This tensor.</returns>
        public Tensor rsqrt_()
        {
            CheckStatus(NativeMethods.lr_math_rsqrt_(Handle));
            return this;
        }

        /// <summary>In place: the square x*x.</summary>
        /// <returns>This tensor.</returns>
        public Tensor square_()
        {
            CheckStatus(NativeMethods.lr_math_square_(Handle));
            return this;
        }

        /// <summary>In place: the hyperbolic tangent.</summary>
        /// <returns>This tensor.</returns>
        public Tensor tanh_()
        {
            CheckStatus(NativeMethods.lr_math_tanh_(Handle));
            return this;
        }

        /// <summary>In place: the logistic sigmoid 1/(1+e^-x).</summary>
        /// <returns>This tensor.</returns>
        public Tensor sigmoid_()
        {
            CheckStatus(NativeMethods.lr_math_sigmoid_(Handle));
            return this;
        }

        /// <summary>In place: the rectified linear unit max(x, 0).</summary>
        /// <returns>This tensor.</returns>
        public Tensor relu_()
        {
            CheckStatus(NativeMethods.lr_math_relu_(Handle));
            return this;
        }

        /// <summary>In place: the sign: -1, 0 or 1.</summary>
        /// <returns>This tensor.</returns>
        public Tensor sign_()
        {
            CheckStatus(NativeMethods.lr_math_sign_(Handle));
            return this;
        }

        /// <summary>In place: rounds down to an integer value.</summary>
        /// <returns>This tensor.</returns>
        public Tensor floor_()
        {
            CheckStatus(NativeMethods.lr_math_floor_(Handle));
            return this;
        }

        /// <summary>In place: rounds up to an integer value.</summary>
        /// <returns>This tensor.</returns>
        public Tensor ceil_()
        {
            CheckStatus(NativeMethods.lr_math_ceil_(Handle));
            return this;
        }

        /// <summary>In place: rounds to the nearest integer value, halves to even.</summary>
        /// <returns>This tensor.</returns>
        public Tensor round_()
        {
            CheckStatus(NativeMethods.lr_math_round_(Handle));
            return this;
        }

        /// <summary>In place: rounds toward zero to an integer value.</summary>
        /// <returns>This tensor.</returns>
        public Tensor trunc_()
        {
            CheckStatus(NativeMethods.lr_math_trunc_(Handle));
            return this;
        }

        /// <summary>In place: the reciprocal 1/x.</summary>
        /// <returns>This tensor.</returns>
        public Tensor reciprocal_()
        {
            CheckStatus(NativeMethods.lr_math_reciprocal_(Handle));
            return this;
        }

        /// <summary>Rounds to <paramref name="decimals"/> decimal places (halves to even).</summary>
        /// <param name="decimals">Number of decimal places (negative rounds to tens, hundreds, ...).</param>
        /// <returns>A new tensor.</returns>
        public Tensor round(long decimals) => decimals == 0 ? round() : Wrap(NativeMethods.lr_math_round_decimals(Handle, decimals));

        /// <summary>Replaces NaN, +inf and -inf by finite values.</summary>
        /// <param name="nan">Replacement for NaN (default 0).</param>
        /// <param name="posinf">Replacement for +inf (default: the largest finite value of the dtype).</param>
        /// <param name="neginf">Replacement for -inf (default: the lowest finite value of the dtype).</param>
        /// <returns>A new tensor.</returns>
        public Tensor nan_to_num(double? nan = 0.0, double? posinf = null, double? neginf = null)
            => Wrap(NativeMethods.lr_math_nan_to_num(Handle, nan.HasValue ? 1 : 0, nan.GetValueOrDefault(), posinf.HasValue ? 1 : 0,
                posinf.GetValueOrDefault(), neginf.HasValue ? 1 : 0, neginf.GetValueOrDefault()));

        // ---------------- in-place updates ----------------

        /// <summary>In place: adds <paramref name="alpha"/> × <paramref name="other"/> (broadcast to this shape).</summary>
        /// <param name="other">The tensor to add.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>This tensor.</returns>
        public Tensor add_(Tensor other, double alpha = 1)
        {
            CheckStatus(NativeMethods.lr_math_add_(Handle, other.Handle, alpha));
            return this;
        }

        /// <summary>In place: adds <paramref name="alpha"/> × <paramref name="other"/>.</summary>
        /// <param name="other">The scalar to add.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>This tensor.</returns>
        public Tensor add_(double other, double alpha = 1)
        {
            CheckStatus(NativeMethods.lr_math_add_scalar_(Handle, other, alpha));
            return this;
        }

        /// <summary>In place: subtracts <paramref name="alpha"/> × <paramref name="other"/>.</summary>
        /// <param name="other">The tensor to subtract.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>This tensor.</returns>
        public Tensor sub_(Tensor other, double alpha = 1)
        {
            CheckStatus(NativeMethods.lr_math_sub_(Handle, other.Handle, alpha));
            return this;
        }

        /// <summary>In place: subtracts <paramref name="alpha"/> × <paramref name="other"/>.</summary>
        /// <param name="other">The scalar to subtract.</param>
        /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
        /// <returns>This tensor.</returns>
        public Tensor sub_(double other, double alpha = 1)
        {
            CheckStatus(NativeMethods.lr_math_sub_scalar_(Handle, other, alpha));
            return this;
        }

        /// <summary>In place: multiplies elementwise.</summary>
        /// <param name="other">The factor.</param>
        /// <returns>This tensor.</returns>
        public Tensor mul_(Tensor other)
        {
            CheckStatus(NativeMethods.lr_math_mul_(Handle, other.Handle));
            return this;
        }

        /// <summary>In place: multiplies by a scalar.</summary>
        /// <param name="other">The factor.</param>
        /// <returns>This tensor.</returns>
        public Tensor mul_(double other)
        {
            CheckStatus(NativeMethods.lr_math_mul_scalar_(Handle, other));
            return this;
        }

        /// <summary>In place: divides elementwise.</summary>
        /// <param name="other">The divisor.</param>
        /// <param name="rounding_mode">null, "trunc" or "floor".</param>
        /// <returns>This tensor.</returns>
        public Tensor div_(Tensor other, string? rounding_mode = null)
        {
            CheckStatus(NativeMethods.lr_math_div_(Handle, other.Handle, MathRoundingMode(rounding_mode)));
            return this;
        }

        /// <summary>In place: divides by a scalar.</summary>
        /// <param name="other">The divisor.</param>
        /// <param name="rounding_mode">null, "trunc" or "floor".</param>
        /// <returns>This tensor.</returns>
        public Tensor div_(double other, string? rounding_mode = null)
        {
            CheckStatus(NativeMethods.lr_math_div_scalar_(Handle, other, MathRoundingMode(rounding_mode)));
            return this;
        }

        /// <summary>In place: raises elementwise to the power <paramref name="exponent"/>.</summary>
        /// <param name="exponent">The exponents.</param>
        /// <returns>This tensor.</returns>
        public Tensor pow_(Tensor exponent)
        {
            CheckStatus(NativeMethods.lr_math_pow_(Handle, exponent.Handle));
            return this;
        }

        /// <summary>In place: raises elementwise to a scalar power.</summary>
        /// <param name="exponent">The exponent.</param>
        /// <returns>This tensor.</returns>
        public Tensor pow_(double exponent)
        {
            CheckStatus(NativeMethods.lr_math_pow_scalar_(Handle, exponent));
            return this;
        }

        /// <summary>In place: this += <paramref name="value"/> × <paramref name="tensor1"/> × <paramref name="tensor2"/>.</summary>
        /// <param name="tensor1">First factor.</param>
        /// <param name="tensor2">Second factor.</param>
        /// <param name="value">Scale of the product.</param>
        /// <returns>This tensor.</returns>
        public Tensor addcmul_(Tensor tensor1, Tensor tensor2, double value = 1)
        {
            CheckStatus(NativeMethods.lr_math_addcmul_(Handle, tensor1.Handle, tensor2.Handle, value));
            return this;
        }

        /// <summary>In place: this += <paramref name="value"/> × <paramref name="tensor1"/> / <paramref name="tensor2"/>.</summary>
        /// <param name="tensor1">Numerator.</param>
        /// <param name="tensor2">Denominator.</param>
        /// <param name="value">Scale of the quotient.</param>
        /// <returns>This tensor.</returns>
        public Tensor addcdiv_(Tensor tensor1, Tensor tensor2, double value = 1)
        {
            CheckStatus(NativeMethods.lr_math_addcdiv_(Handle, tensor1.Handle, tensor2.Handle, value));
            return this;
        }

        /// <summary>In place: this += <paramref name="weight"/> × (<paramref name="end"/> - this).</summary>
        /// <param name="end">The end points.</param>
        /// <param name="weight">The interpolation weight.</param>
        /// <returns>This tensor.</returns>
        public Tensor lerp_(Tensor end, double weight)
        {
            CheckStatus(NativeMethods.lr_math_lerp_scalar_(Handle, end.Handle, weight));
            return this;
        }

        /// <summary>In place: this += <paramref name="weight"/> × (<paramref name="end"/> - this), elementwise weights.</summary>
        /// <param name="end">The end points.</param>
        /// <param name="weight">The interpolation weights.</param>
        /// <returns>This tensor.</returns>
        public Tensor lerp_(Tensor end, Tensor weight)
        {
            CheckStatus(NativeMethods.lr_math_lerp_(Handle, end.Handle, weight.Handle));
            return this;
        }

        /// <summary>In place: copies the elements of <paramref name="src"/> (broadcast, converted to this dtype and device).</summary>
        /// <param name="src">The source.</param>
        /// <param name="non_blocking">Asynchronous copy between host and device where possible.</param>
        /// <returns>This tensor.</returns>
        public Tensor copy_(Tensor src, bool non_blocking = false)
        {
            CheckStatus(NativeMethods.lr_math_copy_(Handle, src.Handle, non_blocking ? 1 : 0));
            return this;
        }

        /// <summary>In place: sets every element to zero.</summary>
        /// <returns>This tensor.</returns>
        public Tensor zero_()
        {
            CheckStatus(NativeMethods.lr_math_zero_(Handle));
            return this;
        }

        /// <summary>In place: sets every element to <paramref name="value"/>.</summary>
        /// <param name="value">The fill value.</param>
        /// <returns>This tensor.</returns>
        public Tensor fill_(double value)
        {
            CheckStatus(NativeMethods.lr_math_fill_(Handle, value));
            return this;
        }

        /// <summary>In place: limits the elements to [min, max] (either bound may be absent, not both).</summary>
        /// <param name="min">Lower bound.</param>
        /// <param name="max">Upper bound.</param>
        /// <returns>This tensor.</returns>
        public Tensor clamp_(double? min = null, double? max = null)
        {
            CheckStatus(NativeMethods.lr_math_clamp_(Handle, min.HasValue ? 1 : 0, min.GetValueOrDefault(), max.HasValue ? 1 : 0, max.GetValueOrDefault()));
            return this;
        }

        /// <summary>In place: limits the elements to [min, max].</summary>
        /// <param name="min">Lower bound.</param>
        /// <param name="max">Upper bound.</param>
        /// <returns>This tensor.</returns>
        public Tensor clamp_(double min, double max)
        {
            CheckStatus(NativeMethods.lr_math_clamp_(Handle, 1, min, 1, max));
            return this;
        }

        /// <summary>In place: limits the elements to elementwise bounds (either may be null, not both).</summary>
        /// <param name="min">Lower bounds (broadcast).</param>
        /// <param name="max">Upper bounds (broadcast).</param>
        /// <returns>This tensor.</returns>
        public Tensor clamp_(Tensor? min, Tensor? max)
        {
            var status = NativeMethods.lr_math_clamp_tensor_(Handle, MathOptionalPtr(min), MathOptionalPtr(max));
            GC.KeepAlive(min);
            GC.KeepAlive(max);
            CheckStatus(status);
            return this;
        }

        /// <summary>In place: raises the elements below <paramref name="min"/> to it.</summary>
        /// <param name="min">Lower bound.</param>
        /// <returns>This tensor.</returns>
        public Tensor clamp_min_(double min)
        {
            CheckStatus(NativeMethods.lr_math_clamp_(Handle, 1, min, 0, 0));
            return this;
        }

        /// <summary>In place: lowers the elements above <paramref name="max"/> to it.</summary>
        /// <param name="max">Upper bound.</param>
        /// <returns>This tensor.</returns>
        public Tensor clamp_max_(double max)
        {
            CheckStatus(NativeMethods.lr_math_clamp_(Handle, 0, 0, 1, max));
            return this;
        }

        /// <summary>In place: sets the elements where <paramref name="mask"/> is true to <paramref name="value"/>.</summary>
        /// <param name="mask">A bool tensor broadcastable to this shape.</param>
        /// <param name="value">The fill value.</param>
        /// <returns>This tensor.</returns>
        public Tensor masked_fill_(Tensor mask, double value)
        {
            CheckStatus(NativeMethods.lr_math_masked_fill_(Handle, mask.Handle, value));
            return this;
        }

        /// <summary>In place: sets the elements where <paramref name="mask"/> is true to the value of a 0-d tensor.</summary>
        /// <param name="mask">A bool tensor broadcastable to this shape.</param>
        /// <param name="value">A 0-d tensor holding the fill value.</param>
        /// <returns>This tensor.</returns>
        public Tensor masked_fill_(Tensor mask, Tensor value)
        {
            CheckStatus(NativeMethods.lr_math_masked_fill_tensor_(Handle, mask.Handle, value.Handle));
            return this;
        }

        // ---------------- out-of-place multi-operand ----------------

        /// <summary>Limits the elements to [min, max] (either bound may be absent, not both).</summary>
        /// <param name="min">Lower bound.</param>
        /// <param name="max">Upper bound.</param>
        /// <returns>A new tensor.</returns>
        public Tensor clamp(double? min = null, double? max = null)
            => Wrap(NativeMethods.lr_math_clamp(Handle, min.HasValue ? 1 : 0, min.GetValueOrDefault(), max.HasValue ? 1 : 0, max.GetValueOrDefault()));

        /// <summary>Limits the elements to [min, max].</summary>
        /// <param name="min">Lower bound.</param>
        /// <param name="max">Upper bound.</param>
        /// <returns>A new tensor.</returns>
        public Tensor clamp(double min, double max) => Wrap(NativeMethods.lr_math_clamp(Handle, 1, min, 1, max));

        /// <summary>Limits the elements to elementwise bounds (either may be null, not both).</summary>
        /// <param name="min">Lower bounds (broadcast).</param>
        /// <param name="max">Upper bounds (broadcast).</param>
        /// <returns>A new tensor.</returns>
        public Tensor clamp(Tensor? min, Tensor? max)
        {
            var p = NativeMethods.lr_math_clamp_tensor(Handle, MathOptionalPtr(min), MathOptionalPtr(max));
            GC.KeepAlive(min);
            GC.KeepAlive(max);
            return Wrap(p);
        }

        /// <summary>Raises the elements below <paramref name="min"/> to it.</summary>
        /// <param name="min">Lower bound.</param>
        /// <returns>A new tensor.</returns>
        public Tensor clamp_min(double min) => Wrap(NativeMethods.lr_math_clamp(Handle, 1, min, 0, 0));

        /// <summary>Lowers the elements above <paramref name="max"/> to it.</summary>
        /// <param name="max">Upper bound.</param>
        /// <returns>A new tensor.</returns>
        public Tensor clamp_max(double max) => Wrap(NativeMethods.lr_math_clamp(Handle, 0, 0, 1, max));

        /// <summary>Linear interpolation this + <paramref name="weight"/> × (<paramref name="end"/> - this).</summary>
        /// <param name="end">The end points.</param>
        /// <param name="weight">The weight.</param>
        /// <returns>A new tensor.</returns>
        public Tensor lerp(Tensor end, double weight) => Wrap(NativeMethods.lr_math_lerp_scalar(Handle, end.Handle, weight));

        /// <summary>Linear interpolation with elementwise weights.</summary>
        /// <param name="end">The end points.</param>
        /// <param name="weight">The weights.</param>
        /// <returns>A new tensor.</returns>
        public Tensor lerp(Tensor end, Tensor weight) => Wrap(NativeMethods.lr_math_lerp(Handle, end.Handle, weight.Handle));

        /// <summary>this + <paramref name="value"/> × <paramref name="tensor1"/> × <paramref name="tensor2"/>.</summary>
        /// <param name="tensor1">First factor.</param>
        /// <param name="tensor2">Second factor.</param>
        /// <param name="value">Scale of the product.</param>
        /// <returns>A new tensor.</returns>
        public Tensor addcmul(Tensor tensor1, Tensor tensor2, double value = 1)
            => Wrap(NativeMethods.lr_math_addcmul(Handle, tensor1.Handle, tensor2.Handle, value));

        /// <summary>this + <paramref name="value"/> × <paramref name="tensor1"/> / <paramref name="tensor2"/>.</summary>
        /// <param name="tensor1">Numerator.</param>
        /// <param name="tensor2">Denominator.</param>
        /// <param name="value">Scale of the quotient.</param>
        /// <returns>A new tensor.</returns>
        public Tensor addcdiv(Tensor tensor1, Tensor tensor2, double value = 1)
            => Wrap(NativeMethods.lr_math_addcdiv(Handle, tensor1.Handle, tensor2.Handle, value));

        // ---------------- comparisons and selection ----------------

        /// <summary>Elementwise equality (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor eq(Tensor other) => Wrap(NativeMethods.lr_math_eq(Handle, other.Handle));

        /// <summary>Elementwise equality with a scalar, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor eq(double other) => Wrap(NativeMethods.lr_math_eq_scalar(Handle, other));

        /// <summary>Elementwise inequality (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor ne(Tensor other) => Wrap(NativeMethods.lr_math_ne(Handle, other.Handle));

        /// <summary>Elementwise inequality with a scalar, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor ne(double other) => Wrap(NativeMethods.lr_math_ne_scalar(Handle, other));

        /// <summary>Elementwise this &lt; other (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor lt(Tensor other) => Wrap(NativeMethods.lr_math_lt(Handle, other.Handle));

        /// <summary>Elementwise this &lt; other, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor lt(double other) => Wrap(NativeMethods.lr_math_lt_scalar(Handle, other));

        /// <summary>Elementwise this &lt;= other (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor le(Tensor other) => Wrap(NativeMethods.lr_math_le(Handle, other.Handle));

        /// <summary>Elementwise this &lt;= other, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor le(double other) => Wrap(NativeMethods.lr_math_le_scalar(Handle, other));

        /// <summary>Elementwise this &gt; other (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor gt(Tensor other) => Wrap(NativeMethods.lr_math_gt(Handle, other.Handle));

        /// <summary>Elementwise this &gt; other, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor gt(double other) => Wrap(NativeMethods.lr_math_gt_scalar(Handle, other));

        /// <summary>Elementwise this &gt;= other (broadcast), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor ge(Tensor other) => Wrap(NativeMethods.lr_math_ge(Handle, other.Handle));

        /// <summary>Elementwise this &gt;= other, as a bool tensor.</summary>
        /// <param name="other">The scalar.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor ge(double other) => Wrap(NativeMethods.lr_math_ge_scalar(Handle, other));

        /// <summary>Whether both tensors have the same shape and the same elements.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>True when equal.</returns>
        public bool equal(Tensor other) => Check(NativeMethods.lr_math_equal(Handle, other.Handle)) != 0;

        /// <summary>Whether |this - other| &lt;= atol + rtol × |other| everywhere (broadcast).</summary>
        /// <param name="other">The other tensor.</param>
        /// <param name="rtol">Relative tolerance.</param>
        /// <param name="atol">Absolute tolerance.</param>
        /// <param name="equal_nan">Count NaN as equal to NaN.</param>
        /// <returns>True when close.</returns>
        public bool allclose(Tensor other, double rtol = 1e-05, double atol = 1e-08, bool equal_nan = false)
            => Check(NativeMethods.lr_math_allclose(Handle, other.Handle, rtol, atol, equal_nan ? 1 : 0)) != 0;

        /// <summary>Elementwise logical AND (nonzero is true), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor logical_and(Tensor other) => Wrap(NativeMethods.lr_math_logical_and(Handle, other.Handle));

        /// <summary>Elementwise logical OR (nonzero is true), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor logical_or(Tensor other) => Wrap(NativeMethods.lr_math_logical_or(Handle, other.Handle));

        /// <summary>Elementwise logical XOR (nonzero is true), as a bool tensor.</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor logical_xor(Tensor other) => Wrap(NativeMethods.lr_math_logical_xor(Handle, other.Handle));

        /// <summary>This tensor where <paramref name="condition"/> is true, else <paramref name="other"/> (broadcast).</summary>
        /// <param name="condition">A bool tensor.</param>
        /// <param name="other">Values where the condition is false.</param>
        /// <returns>A new tensor.</returns>
        public Tensor where(Tensor condition, Tensor other) => Wrap(NativeMethods.lr_math_where(condition.Handle, Handle, other.Handle));

        /// <summary>This tensor where <paramref name="condition"/> is true, else a scalar.</summary>
        /// <param name="condition">A bool tensor.</param>
        /// <param name="other">Value where the condition is false.</param>
        /// <returns>A new tensor.</returns>
        public Tensor where(Tensor condition, double other) => Wrap(NativeMethods.lr_math_where_scalar_other(condition.Handle, Handle, other));

        /// <summary>A copy with the elements where <paramref name="mask"/> is true set to <paramref name="value"/>.</summary>
        /// <param name="mask">A bool tensor broadcastable to this shape.</param>
        /// <param name="value">The fill value.</param>
        /// <returns>A new tensor.</returns>
        public Tensor masked_fill(Tensor mask, double value) => Wrap(NativeMethods.lr_math_masked_fill(Handle, mask.Handle, value));

        /// <summary>A copy with the elements where <paramref name="mask"/> is true set to the value of a 0-d tensor
        /// (differentiable with respect to it).</summary>
        /// <param name="mask">A bool tensor broadcastable to this shape.</param>
        /// <param name="value">A 0-d tensor holding the fill value.</param>
        /// <returns>A new tensor.</returns>
        public Tensor masked_fill(Tensor mask, Tensor value) => Wrap(NativeMethods.lr_math_masked_fill_tensor(Handle, mask.Handle, value.Handle));

        // ---------------- reductions ----------------

        /// <summary>Sum of the elements, over all dims or over <paramref name="dim"/>.</summary>
        /// <param name="dim">Dims to reduce (negative counts from the end); null reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <param name="dtype">Accumulate and return in this type (integer inputs default to int64).</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor sum(long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_sum(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0, MathDtype(dtype)));
        }

        /// <summary>Sum over one dim.</summary>
        /// <param name="dim">The dim (negative counts from the end).</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <param name="dtype">Accumulate and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor sum(long dim, bool keepdim = false, ScalarType? dtype = null)
            => Wrap(NativeMethods.lr_math_sum(Handle, &dim, 1, keepdim ? 1 : 0, MathDtype(dtype)));

        /// <summary>Mean of the elements (floating types), over all dims or over <paramref name="dim"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <param name="dtype">Compute and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor mean(long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_mean(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0, MathDtype(dtype)));
        }

        /// <summary>Mean over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <param name="dtype">Compute and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor mean(long dim, bool keepdim = false, ScalarType? dtype = null)
            => Wrap(NativeMethods.lr_math_mean(Handle, &dim, 1, keepdim ? 1 : 0, MathDtype(dtype)));

        /// <summary>Product of the elements, over all dims or over <paramref name="dim"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <param name="dtype">Accumulate and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor prod(long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_prod(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0, MathDtype(dtype)));
        }

        /// <summary>Product over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <param name="dtype">Accumulate and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor prod(long dim, bool keepdim = false, ScalarType? dtype = null)
            => Wrap(NativeMethods.lr_math_prod(Handle, &dim, 1, keepdim ? 1 : 0, MathDtype(dtype)));

        private unsafe Tensor VarStd(long[]? dim, double correction, bool keepdim, int kind)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_var_std(Handle, p, dim is null ? -1 : dim.Length, correction, keepdim ? 1 : 0, kind));
        }

        private unsafe Tensor VarStd(long dim, double correction, bool keepdim, int kind)
            => Wrap(NativeMethods.lr_math_var_std(Handle, &dim, 1, correction, keepdim ? 1 : 0, kind));

        /// <summary>Variance over all dims or over <paramref name="dim"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="unbiased">Divide by N - 1 (Bessel's correction) rather than N.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor var(long[]? dim = null, bool unbiased = true, bool keepdim = false) => VarStd(dim, unbiased ? 1 : 0, keepdim, 0);

        /// <summary>Variance over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="unbiased">Divide by N - 1 rather than N.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor var(long dim, bool unbiased = true, bool keepdim = false) => VarStd(dim, unbiased ? 1 : 0, keepdim, 0);

        /// <summary>Variance with divisor N - <paramref name="correction"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="correction">Subtracted from the sample count in the divisor (libtorch 1.13 takes integers only).</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor var(long[]? dim, double correction, bool keepdim = false) => VarStd(dim, correction, keepdim, 0);

        /// <summary>Standard deviation over all dims or over <paramref name="dim"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="unbiased">Divide by N - 1 (Bessel's correction) rather than N.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor std(long[]? dim = null, bool unbiased = true, bool keepdim = false) => VarStd(dim, unbiased ? 1 : 0, keepdim, 1);

        /// <summary>Standard deviation over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="unbiased">Divide by N - 1 rather than N.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor std(long dim, bool unbiased = true, bool keepdim = false) => VarStd(dim, unbiased ? 1 : 0, keepdim, 1);

        /// <summary>Standard deviation with divisor N - <paramref name="correction"/>.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="correction">Subtracted from the sample count in the divisor (libtorch 1.13 takes integers only).</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public Tensor std(long[]? dim, double correction, bool keepdim = false) => VarStd(dim, correction, keepdim, 1);

        /// <summary>The largest element, as a 0-d tensor.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor max() => Wrap(NativeMethods.lr_math_max_all(Handle));

        /// <summary>The largest elements along a dim and their positions.</summary>
        /// <param name="dim">The dim (negative counts from the end).</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>The values and their int64 indices.</returns>
        public (Tensor values, Tensor indices) max(long dim, bool keepdim = false)
        {
            CheckStatus(NativeMethods.lr_math_max_dim(Handle, dim, keepdim ? 1 : 0, out var v, out var i));
            return (new Tensor(v), new Tensor(i));
        }

        /// <summary>Elementwise maximum (same as <see cref="maximum(Tensor)"/>).</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor max(Tensor other) => maximum(other);

        /// <summary>The smallest element, as a 0-d tensor.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor min() => Wrap(NativeMethods.lr_math_min_all(Handle));

        /// <summary>The smallest elements along a dim and their positions.</summary>
        /// <param name="dim">The dim (negative counts from the end).</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>The values and their int64 indices.</returns>
        public (Tensor values, Tensor indices) min(long dim, bool keepdim = false)
        {
            CheckStatus(NativeMethods.lr_math_min_dim(Handle, dim, keepdim ? 1 : 0, out var v, out var i));
            return (new Tensor(v), new Tensor(i));
        }

        /// <summary>Elementwise minimum (same as <see cref="minimum(Tensor)"/>).</summary>
        /// <param name="other">The other tensor.</param>
        /// <returns>A new tensor.</returns>
        public Tensor min(Tensor other) => minimum(other);

        /// <summary>The maximum over dims (gradient spread evenly among ties).</summary>
        /// <param name="dim">Dims to reduce; null or empty reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor amax(long[]? dim = null, bool keepdim = false)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_amax(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0));
        }

        /// <summary>The maximum over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor amax(long dim, bool keepdim = false) => Wrap(NativeMethods.lr_math_amax(Handle, &dim, 1, keepdim ? 1 : 0));

        /// <summary>The minimum over dims (gradient spread evenly among ties).</summary>
        /// <param name="dim">Dims to reduce; null or empty reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor amin(long[]? dim = null, bool keepdim = false)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_amin(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0));
        }

        /// <summary>The minimum over one dim.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor amin(long dim, bool keepdim = false) => Wrap(NativeMethods.lr_math_amin(Handle, &dim, 1, keepdim ? 1 : 0));

        /// <summary>Position of the largest element (first on ties), in the flattened tensor or along a dim.</summary>
        /// <param name="dim">The dim; null: over the flattened tensor.</param>
        /// <param name="keepdim">Keep the dim with size 1.</param>
        /// <returns>An int64 tensor.</returns>
        public Tensor argmax(long? dim = null, bool keepdim = false)
            => Wrap(NativeMethods.lr_math_argmax(Handle, dim.HasValue ? 1 : 0, dim.GetValueOrDefault(), keepdim ? 1 : 0));

        /// <summary>Position of the smallest element (first on ties), in the flattened tensor or along a dim.</summary>
        /// <param name="dim">The dim; null: over the flattened tensor.</param>
        /// <param name="keepdim">Keep the dim with size 1.</param>
        /// <returns>An int64 tensor.</returns>
        public Tensor argmin(long? dim = null, bool keepdim = false)
            => Wrap(NativeMethods.lr_math_argmin(Handle, dim.HasValue ? 1 : 0, dim.GetValueOrDefault(), keepdim ? 1 : 0));

        /// <summary>The vector p-norm (sum |x|^p)^(1/p) over all elements or over <paramref name="dim"/>.</summary>
        /// <param name="p">The order (2: Euclidean; double.PositiveInfinity: max |x|).</param>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor norm(double p = 2, long[]? dim = null, bool keepdim = false)
        {
            fixed (long* d = dim) return Wrap(NativeMethods.lr_math_norm(Handle, p, d, dim is null ? -1 : dim.Length, keepdim ? 1 : 0));
        }

        /// <summary>log(sum(exp(x))) over dims, computed stably.</summary>
        /// <param name="dim">Dims to reduce; null reduces all.</param>
        /// <param name="keepdim">Keep reduced dims with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor logsumexp(long[]? dim, bool keepdim = false)
        {
            fixed (long* p = dim) return Wrap(NativeMethods.lr_math_logsumexp(Handle, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0));
        }

        /// <summary>log(sum(exp(x))) over one dim, computed stably.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A new tensor.</returns>
        public unsafe Tensor logsumexp(long dim, bool keepdim = false) => Wrap(NativeMethods.lr_math_logsumexp(Handle, &dim, 1, keepdim ? 1 : 0));

        /// <summary>Cumulative sum along a dim.</summary>
        /// <param name="dim">The dim (negative counts from the end).</param>
        /// <param name="dtype">Accumulate and return in this type.</param>
        /// <returns>A new tensor.</returns>
        public Tensor cumsum(long dim, ScalarType? dtype = null) => Wrap(NativeMethods.lr_math_cumsum(Handle, dim, MathDtype(dtype)));

        /// <summary>Whether any element is nonzero, as a 0-d bool tensor.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor any() => Wrap(NativeMethods.lr_math_any(Handle));

        /// <summary>Whether any element along a dim is nonzero.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor any(long dim, bool keepdim = false) => Wrap(NativeMethods.lr_math_any_dim(Handle, dim, keepdim ? 1 : 0));

        /// <summary>Whether every element is nonzero, as a 0-d bool tensor.</summary>
        /// <returns>A new tensor.</returns>
        public Tensor all() => Wrap(NativeMethods.lr_math_all(Handle));

        /// <summary>Whether every element along a dim is nonzero.</summary>
        /// <param name="dim">The dim.</param>
        /// <param name="keepdim">Keep it with size 1.</param>
        /// <returns>A bool tensor.</returns>
        public Tensor all(long dim, bool keepdim = false) => Wrap(NativeMethods.lr_math_all_dim(Handle, dim, keepdim ? 1 : 0));

        // ---------------- linear algebra ----------------

        /// <summary>Matrix product with NumPy semantics: 1-D operands are vectors, batch dims broadcast.</summary>
        /// <param name="other">The right operand.</param>
        /// <returns>A new tensor.</returns>
        public Tensor matmul(Tensor other) => Wrap(NativeMethods.lr_math_matmul(Handle, other.Handle));

        /// <summary>Product of two 2-D matrices.</summary>
        /// <param name="mat2">The right matrix.</param>
        /// <returns>A new tensor.</returns>
        public Tensor mm(Tensor mat2) => Wrap(NativeMethods.lr_math_mm(Handle, mat2.Handle));

        /// <summary>Batched product of 3-D tensors [b, n, m] × [b, m, p].</summary>
        /// <param name="mat2">The right batch.</param>
        /// <returns>A new tensor.</returns>
        public Tensor bmm(Tensor mat2) => Wrap(NativeMethods.lr_math_bmm(Handle, mat2.Handle));

        /// <summary>Matrix-vector product.</summary>
        /// <param name="vec">The vector.</param>
        /// <returns>A new tensor.</returns>
        public Tensor mv(Tensor vec) => Wrap(NativeMethods.lr_math_mv(Handle, vec.Handle));

        /// <summary><paramref name="beta"/> × this + <paramref name="alpha"/> × (<paramref name="mat1"/> @ <paramref name="mat2"/>).</summary>
        /// <param name="mat1">Left matrix.</param>
        /// <param name="mat2">Right matrix.</param>
        /// <param name="beta">Scale of this tensor (broadcast to the product's shape).</param>
        /// <param name="alpha">Scale of the product.</param>
        /// <returns>A new tensor.</returns>
        public Tensor addmm(Tensor mat1, Tensor mat2, double beta = 1, double alpha = 1)
            => Wrap(NativeMethods.lr_math_addmm(Handle, mat1.Handle, mat2.Handle, beta, alpha));

        /// <summary><paramref name="beta"/> × this + <paramref name="alpha"/> × bmm(<paramref name="batch1"/>, <paramref name="batch2"/>).</summary>
        /// <param name="batch1">Left batch [b, n, m].</param>
        /// <param name="batch2">Right batch [b, m, p].</param>
        /// <param name="beta">Scale of this tensor.</param>
        /// <param name="alpha">Scale of the product.</param>
        /// <returns>A new tensor.</returns>
        public Tensor baddbmm(Tensor batch1, Tensor batch2, double beta = 1, double alpha = 1)
            => Wrap(NativeMethods.lr_math_baddbmm(Handle, batch1.Handle, batch2.Handle, beta, alpha));

        /// <summary>Outer product of two vectors.</summary>
        /// <param name="vec2">The second vector.</param>
        /// <returns>A new tensor [n, m].</returns>
        public Tensor outer(Tensor vec2) => Wrap(NativeMethods.lr_math_outer(Handle, vec2.Handle));

        /// <summary>Dot product of two 1-D tensors of the same length and dtype.</summary>
        /// <param name="other">The other vector.</param>
        /// <returns>A 0-d tensor.</returns>
        public Tensor dot(Tensor other) => Wrap(NativeMethods.lr_math_dot(Handle, other.Handle));
    }
}
