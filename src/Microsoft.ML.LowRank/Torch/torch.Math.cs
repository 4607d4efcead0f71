using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

// Static forms of the math ops (torch.add(a, b), torch.where(...), torch.einsum(...)); each forwards to the
// tensor method of the same name, documented in Tensor.Math.cs.
public static partial class torch
{
    // ---------------- elementwise binary ----------------

    /// <summary><paramref name="input"/> + <paramref name="alpha"/> × <paramref name="other"/> (broadcast).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The tensor to add.</param>
    /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor add(Tensor input, Tensor other, double alpha = 1) => input.add(other, alpha);

    /// <summary><paramref name="input"/> + <paramref name="alpha"/> × <paramref name="other"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar to add.</param>
    /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor add(Tensor input, double other, double alpha = 1) => input.add(other, alpha);

    /// <summary><paramref name="input"/> - <paramref name="alpha"/> × <paramref name="other"/> (broadcast).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The tensor to subtract.</param>
    /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sub(Tensor input, Tensor other, double alpha = 1) => input.sub(other, alpha);

    /// <summary><paramref name="input"/> - <paramref name="alpha"/> × <paramref name="other"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar to subtract.</param>
    /// <param name="alpha">Multiplier of <paramref name="other"/>.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sub(Tensor input, double other, double alpha = 1) => input.sub(other, alpha);

    /// <summary>Elementwise product (broadcast).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other factor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mul(Tensor input, Tensor other) => input.mul(other);

    /// <summary>Product with a scalar.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The factor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mul(Tensor input, double other) => input.mul(other);

    /// <summary>Elementwise division (broadcast).</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <param name="rounding_mode">null (true division), "trunc" or "floor".</param>
    /// <returns>A new tensor.</returns>
    public static Tensor div(Tensor input, Tensor other, string? rounding_mode = null) => input.div(other, rounding_mode);

    /// <summary>Division by a scalar.</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <param name="rounding_mode">null (true division), "trunc" or "floor".</param>
    /// <returns>A new tensor.</returns>
    public static Tensor div(Tensor input, double other, string? rounding_mode = null) => input.div(other, rounding_mode);

    /// <summary>A scalar divided by a tensor.</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <param name="rounding_mode">null (true division), "trunc" or "floor".</param>
    /// <returns>A new tensor.</returns>
    public static Tensor div(double input, Tensor other, string? rounding_mode = null)
        => Tensor.Wrap(NativeMethods.lr_math_rdiv_scalar(input, other.Handle, Tensor.MathRoundingMode(rounding_mode)));

    /// <summary>Elementwise power (broadcast).</summary>
    /// <param name="input">The bases.</param>
    /// <param name="exponent">The exponents.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor pow(Tensor input, Tensor exponent) => input.pow(exponent);

    /// <summary>Elementwise power with a scalar exponent.</summary>
    /// <param name="input">The bases.</param>
    /// <param name="exponent">The exponent.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor pow(Tensor input, double exponent) => input.pow(exponent);

    /// <summary>A scalar base raised to elementwise exponents.</summary>
    /// <param name="self">The base.</param>
    /// <param name="exponent">The exponents.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor pow(double self, Tensor exponent) => Tensor.Wrap(NativeMethods.lr_math_rpow_scalar(self, exponent.Handle));

    /// <summary>Python-style remainder (sign of the divisor).</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor remainder(Tensor input, Tensor other) => input.remainder(other);

    /// <summary>Python-style remainder by a scalar.</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor remainder(Tensor input, double other) => input.remainder(other);

    /// <summary>C-style remainder (sign of the dividend).</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor fmod(Tensor input, Tensor other) => input.fmod(other);

    /// <summary>C-style remainder by a scalar.</summary>
    /// <param name="input">The dividend.</param>
    /// <param name="other">The divisor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor fmod(Tensor input, double other) => input.fmod(other);

    /// <summary>Elementwise maximum (broadcast; NaN propagates).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor maximum(Tensor input, Tensor other) => input.maximum(other);

    /// <summary>Elementwise maximum with a scalar.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor maximum(Tensor input, double other) => input.maximum(other);

    /// <summary>Elementwise minimum (broadcast; NaN propagates).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor minimum(Tensor input, Tensor other) => input.minimum(other);

    /// <summary>Elementwise minimum with a scalar.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor minimum(Tensor input, double other) => input.minimum(other);

    /// <summary>atan2(input, other) in radians (broadcast).</summary>
    /// <param name="input">The y coordinates.</param>
    /// <param name="other">The x coordinates.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor atan2(Tensor input, Tensor other) => input.atan2(other);

    /// <summary>atan2(input, other) in radians with a scalar x.</summary>
    /// <param name="input">The y coordinates.</param>
    /// <param name="other">The x coordinate.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor atan2(Tensor input, double other) => input.atan2(other);

    // ---------------- unary ----------------

    /// <summary>The negation, -x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor neg(Tensor input) => input.neg();

    /// <summary>The absolute value |x|.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor abs(Tensor input) => input.abs();

    /// <summary>The exponential e^x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor exp(Tensor input) => input.exp();

    /// <summary>2^x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor exp2(Tensor input) => input.exp2();

    /// <summary>The natural logarithm.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor log(Tensor input) => input.log();

    /// <summary>The base-2 logarithm.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor log2(Tensor input) => input.log2();

    /// <summary>The base-10 logarithm.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor log10(Tensor input) => input.log10();

    /// <summary>log(1 + x), accurate for small x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor log1p(Tensor input) => input.log1p();

    /// <summary>e^x - 1, accurate for small x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor expm1(Tensor input) => input.expm1();

    /// <summary>The square root.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sqrt(Tensor input) => input.sqrt();

    /// <summary>The reciprocal square root 1/sqrt(x).</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor rsqrt(Tensor input) => input.rsqrt();

    /// <summary>The square x*x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor square(Tensor input) => input.square();

    /// <summary>The sine.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sin(Tensor input) => input.sin();

    /// <summary>The cosine.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor cos(Tensor input) => input.cos();

    /// <summary>The tangent.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor tan(Tensor input) => input.tan();

    /// <summary>The hyperbolic tangent.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor tanh(Tensor input) => input.tanh();

    /// <summary>The logistic sigmoid 1/(1+e^-x).</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sigmoid(Tensor input) => input.sigmoid();

    /// <summary>The rectified linear unit max(x, 0).</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor relu(Tensor input) => input.relu();

    /// <summary>The sign: -1, 0 or 1.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sign(Tensor input) => input.sign();

    /// <summary>Rounds down to an integer value.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor floor(Tensor input) => input.floor();

    /// <summary>Rounds up to an integer value.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor ceil(Tensor input) => input.ceil();

    /// <summary>Rounds to the nearest integer value, halves to even.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor round(Tensor input) => input.round();

    /// <summary>Rounds toward zero to an integer value.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor trunc(Tensor input) => input.trunc();

    /// <summary>The reciprocal 1/x.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor reciprocal(Tensor input) => input.reciprocal();

    /// <summary>The error function.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor erf(Tensor input) => input.erf();

    /// <summary>Logical NOT (nonzero is true), as a bool tensor.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor logical_not(Tensor input) => input.logical_not();

    /// <summary>True where the element is NaN.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor isnan(Tensor input) => input.isnan();

    /// <summary>True where the element is +inf or -inf.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor isinf(Tensor input) => input.isinf();

    /// <summary>True where the element is neither NaN nor infinite.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor isfinite(Tensor input) => input.isfinite();

    /// <summary>In place: the negation, -x.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor neg_(Tensor input) => input.neg_();

    /// <summary>In place: the absolute value |x|.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor abs_(Tensor input) => input.abs_();

    /// <summary>In place: the exponential e^x.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor exp_(Tensor input) => input.exp_();

    /// <summary>In place: the natural logarithm.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor log_(Tensor input) => input.log_();

    /// <summary>In place: the square root.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor sqrt_(Tensor input) => input.sqrt_();

    /// <summary>In place: the reciprocal square root 1/sqrt(x).</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor rsqrt_(Tensor input) => input.rsqrt_();

    /// <summary>In place: the square x*x.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor square_(Tensor input) => input.square_();

    /// <summary>In place: the hyperbolic tangent.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor tanh_(Tensor input) => input.tanh_();

    /// <summary>In place: the logistic sigmoid 1/(1+e^-x).</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor sigmoid_(Tensor input) => input.sigmoid_();

    /// <summary>In place: the rectified linear unit max(x, 0).</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor relu_(Tensor input) => input.relu_();

    /// <summary>In place: the sign: -1, 0 or 1.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor sign_(Tensor input) => input.sign_();

    /// <summary>In place: rounds down to an integer value.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor floor_(Tensor input) => input.floor_();

    /// <summary>In place: rounds up to an integer value.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor ceil_(Tensor input) => input.ceil_();

    /// <summary>In place: rounds to the nearest integer value, halves to even.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor round_(Tensor input) => input.round_();

    /// <summary>In place: rounds toward zero to an integer value.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor trunc_(Tensor input) => input.trunc_();

    /// <summary>In place: the reciprocal 1/x.</summary>
    /// <param name="input">The tensor to modify.</param>
    /// <returns><paramref name="input"/>.</returns>
    public static Tensor reciprocal_(Tensor input) => input.reciprocal_();

    /// <summary>Rounds to <paramref name="decimals"/> decimal places (halves to even).</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="decimals">Number of decimal places.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor round(Tensor input, long decimals) => input.round(decimals);

    /// <summary>Replaces NaN, +inf and -inf by finite values.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="nan">Replacement for NaN (default 0).</param>
    /// <param name="posinf">Replacement for +inf (default: the largest finite value).</param>
    /// <param name="neginf">Replacement for -inf (default: the lowest finite value).</param>
    /// <returns>A new tensor.</returns>
    public static Tensor nan_to_num(Tensor input, double? nan = 0.0, double? posinf = null, double? neginf = null)
        => input.nan_to_num(nan, posinf, neginf);

    // ---------------- multi-operand ----------------

    /// <summary>Limits the elements to [min, max].</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="min">Lower bound.</param>
    /// <param name="max">Upper bound.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor clamp(Tensor input, double? min = null, double? max = null) => input.clamp(min, max);

    /// <summary>Limits the elements to [min, max].</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="min">Lower bound.</param>
    /// <param name="max">Upper bound.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor clamp(Tensor input, double min, double max) => input.clamp(min, max);

    /// <summary>Limits the elements to elementwise bounds.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="min">Lower bounds (or null).</param>
    /// <param name="max">Upper bounds (or null).</param>
    /// <returns>A new tensor.</returns>
    public static Tensor clamp(Tensor input, Tensor? min, Tensor? max) => input.clamp(min, max);

    /// <summary>Same as <see cref="clamp(Tensor, double?, double?)"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="min">Lower bound.</param>
    /// <param name="max">Upper bound.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor clip(Tensor input, double? min = null, double? max = null) => input.clamp(min, max);

    /// <summary>Linear interpolation input + weight × (end - input).</summary>
    /// <param name="input">The start points.</param>
    /// <param name="end">The end points.</param>
    /// <param name="weight">The weight.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor lerp(Tensor input, Tensor end, double weight) => input.lerp(end, weight);

    /// <summary>Linear interpolation with elementwise weights.</summary>
    /// <param name="input">The start points.</param>
    /// <param name="end">The end points.</param>
    /// <param name="weight">The weights.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor lerp(Tensor input, Tensor end, Tensor weight) => input.lerp(end, weight);

    /// <summary>input + value × tensor1 × tensor2.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="tensor1">First factor.</param>
    /// <param name="tensor2">Second factor.</param>
    /// <param name="value">Scale of the product.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor addcmul(Tensor input, Tensor tensor1, Tensor tensor2, double value = 1) => input.addcmul(tensor1, tensor2, value);

    /// <summary>input + value × tensor1 / tensor2.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="tensor1">Numerator.</param>
    /// <param name="tensor2">Denominator.</param>
    /// <param name="value">Scale of the quotient.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor addcdiv(Tensor input, Tensor tensor1, Tensor tensor2, double value = 1) => input.addcdiv(tensor1, tensor2, value);

    // ---------------- comparisons and selection ----------------

    /// <summary>Elementwise equality, as a bool tensor.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor eq(Tensor input, Tensor other) => input.eq(other);

    /// <summary>Elementwise equality with a scalar.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor eq(Tensor input, double other) => input.eq(other);

    /// <summary>Elementwise inequality, as a bool tensor.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor ne(Tensor input, Tensor other) => input.ne(other);

    /// <summary>Elementwise inequality with a scalar.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor ne(Tensor input, double other) => input.ne(other);

    /// <summary>Elementwise input &lt; other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor lt(Tensor input, Tensor other) => input.lt(other);

    /// <summary>Elementwise input &lt; other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor lt(Tensor input, double other) => input.lt(other);

    /// <summary>Elementwise input &lt;= other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor le(Tensor input, Tensor other) => input.le(other);

    /// <summary>Elementwise input &lt;= other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor le(Tensor input, double other) => input.le(other);

    /// <summary>Elementwise input &gt; other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor gt(Tensor input, Tensor other) => input.gt(other);

    /// <summary>Elementwise input &gt; other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor gt(Tensor input, double other) => input.gt(other);

    /// <summary>Elementwise input &gt;= other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor ge(Tensor input, Tensor other) => input.ge(other);

    /// <summary>Elementwise input &gt;= other.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The scalar.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor ge(Tensor input, double other) => input.ge(other);

    /// <summary>Whether both tensors have the same shape and elements.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>True when equal.</returns>
    public static bool equal(Tensor input, Tensor other) => input.equal(other);

    /// <summary>Whether |input - other| &lt;= atol + rtol × |other| everywhere.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <param name="rtol">Relative tolerance.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="equal_nan">Count NaN as equal to NaN.</param>
    /// <returns>True when close.</returns>
    public static bool allclose(Tensor input, Tensor other, double rtol = 1e-05, double atol = 1e-08, bool equal_nan = false)
        => input.allclose(other, rtol, atol, equal_nan);

    /// <summary>Elementwise logical AND.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor logical_and(Tensor input, Tensor other) => input.logical_and(other);

    /// <summary>Elementwise logical OR.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor logical_or(Tensor input, Tensor other) => input.logical_or(other);

    /// <summary>Elementwise logical XOR.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor logical_xor(Tensor input, Tensor other) => input.logical_xor(other);

    /// <summary>Elements of <paramref name="input"/> where <paramref name="condition"/> is true, else of <paramref name="other"/>
    /// (all three broadcast together; the result type is promoted from both branches).</summary>
    /// <param name="condition">A bool tensor.</param>
    /// <param name="input">Values where true.</param>
    /// <param name="other">Values where false.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor where(Tensor condition, Tensor input, Tensor other) => Tensor.Wrap(NativeMethods.lr_math_where(condition.Handle, input.Handle, other.Handle));

    /// <summary>A scalar where <paramref name="condition"/> is true, else elements of <paramref name="other"/>.</summary>
    /// <param name="condition">A bool tensor.</param>
    /// <param name="input">Value where true.</param>
    /// <param name="other">Values where false.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor where(Tensor condition, double input, Tensor other) => Tensor.Wrap(NativeMethods.lr_math_where_scalar_self(condition.Handle, input, other.Handle));

    /// <summary>Elements of <paramref name="input"/> where <paramref name="condition"/> is true, else a scalar.</summary>
    /// <param name="condition">A bool tensor.</param>
    /// <param name="input">Values where true.</param>
    /// <param name="other">Value where false.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor where(Tensor condition, Tensor input, double other) => Tensor.Wrap(NativeMethods.lr_math_where_scalar_other(condition.Handle, input.Handle, other));

    /// <summary>One scalar where <paramref name="condition"/> is true, another where false, with the condition's shape.</summary>
    /// <param name="condition">A bool tensor.</param>
    /// <param name="input">Value where true.</param>
    /// <param name="other">Value where false.</param>
    /// <param name="dtype">Result type (default: the default float type when either value is fractional, else int64).</param>
    /// <returns>A new tensor.</returns>
    public static Tensor where(Tensor condition, double input, double other, ScalarType? dtype = null)
        => Tensor.Wrap(NativeMethods.lr_math_where_scalars(condition.Handle, input, other, Tensor.MathDtype(dtype)));

    /// <summary>A copy of <paramref name="input"/> with the elements where <paramref name="mask"/> is true set to <paramref name="value"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="mask">A bool tensor broadcastable to the input.</param>
    /// <param name="value">The fill value.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor masked_fill(Tensor input, Tensor mask, double value) => input.masked_fill(mask, value);

    // ---------------- reductions ----------------

    /// <summary>Sum over all dims or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <param name="dtype">Accumulate and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sum(Tensor input, long[]? dim = null, bool keepdim = false, ScalarType? dtype = null) => input.sum(dim, keepdim, dtype);

    /// <summary>Sum over one dim.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <param name="dtype">Accumulate and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor sum(Tensor input, long dim, bool keepdim = false, ScalarType? dtype = null) => input.sum(dim, keepdim, dtype);

    /// <summary>Mean over all dims or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <param name="dtype">Compute and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mean(Tensor input, long[]? dim = null, bool keepdim = false, ScalarType? dtype = null) => input.mean(dim, keepdim, dtype);

    /// <summary>Mean over one dim.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <param name="dtype">Compute and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mean(Tensor input, long dim, bool keepdim = false, ScalarType? dtype = null) => input.mean(dim, keepdim, dtype);

    /// <summary>Product over all dims or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <param name="dtype">Accumulate and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor prod(Tensor input, long[]? dim = null, bool keepdim = false, ScalarType? dtype = null) => input.prod(dim, keepdim, dtype);

    /// <summary>Variance over all dims or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="unbiased">Divide by N - 1 rather than N.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor var(Tensor input, long[]? dim = null, bool unbiased = true, bool keepdim = false) => input.var(dim, unbiased, keepdim);

    /// <summary>Variance with divisor N - <paramref name="correction"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="correction">Subtracted from the sample count in the divisor.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor var(Tensor input, long[]? dim, double correction, bool keepdim = false) => input.var(dim, correction, keepdim);

    /// <summary>Standard deviation over all dims or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="unbiased">Divide by N - 1 rather than N.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor std(Tensor input, long[]? dim = null, bool unbiased = true, bool keepdim = false) => input.std(dim, unbiased, keepdim);

    /// <summary>Standard deviation with divisor N - <paramref name="correction"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="correction">Subtracted from the sample count in the divisor.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor std(Tensor input, long[]? dim, double correction, bool keepdim = false) => input.std(dim, correction, keepdim);

    /// <summary>The largest element, as a 0-d tensor.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor max(Tensor input) => input.max();

    /// <summary>The largest elements along a dim and their positions.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <returns>The values and their int64 indices.</returns>
    public static (Tensor values, Tensor indices) max(Tensor input, long dim, bool keepdim = false) => input.max(dim, keepdim);

    /// <summary>Elementwise maximum.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor max(Tensor input, Tensor other) => input.maximum(other);

    /// <summary>The smallest element, as a 0-d tensor.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor min(Tensor input) => input.min();

    /// <summary>The smallest elements along a dim and their positions.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <returns>The values and their int64 indices.</returns>
    public static (Tensor values, Tensor indices) min(Tensor input, long dim, bool keepdim = false) => input.min(dim, keepdim);

    /// <summary>Elementwise minimum.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="other">The other tensor.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor min(Tensor input, Tensor other) => input.minimum(other);

    /// <summary>The maximum over dims.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null or empty reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor amax(Tensor input, long[]? dim = null, bool keepdim = false) => input.amax(dim, keepdim);

    /// <summary>The minimum over dims.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null or empty reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor amin(Tensor input, long[]? dim = null, bool keepdim = false) => input.amin(dim, keepdim);

    /// <summary>Position of the largest element.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim; null: over the flattened tensor.</param>
    /// <param name="keepdim">Keep the dim with size 1.</param>
    /// <returns>An int64 tensor.</returns>
    public static Tensor argmax(Tensor input, long? dim = null, bool keepdim = false) => input.argmax(dim, keepdim);

    /// <summary>Position of the smallest element.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim; null: over the flattened tensor.</param>
    /// <param name="keepdim">Keep the dim with size 1.</param>
    /// <returns>An int64 tensor.</returns>
    public static Tensor argmin(Tensor input, long? dim = null, bool keepdim = false) => input.argmin(dim, keepdim);

    /// <summary>The vector p-norm over all elements or over <paramref name="dim"/>.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="p">The order.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor norm(Tensor input, double p = 2, long[]? dim = null, bool keepdim = false) => input.norm(p, dim, keepdim);

    /// <summary>log(sum(exp(x))) over dims.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">Dims to reduce; null reduces all.</param>
    /// <param name="keepdim">Keep reduced dims with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor logsumexp(Tensor input, long[]? dim, bool keepdim = false) => input.logsumexp(dim, keepdim);

    /// <summary>log(sum(exp(x))) over one dim.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor logsumexp(Tensor input, long dim, bool keepdim = false) => input.logsumexp(dim, keepdim);

    /// <summary>Cumulative sum along a dim.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="dtype">Accumulate and return in this type.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor cumsum(Tensor input, long dim, ScalarType? dtype = null) => input.cumsum(dim, dtype);

    /// <summary>Whether any element is nonzero.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A 0-d bool tensor.</returns>
    public static Tensor any(Tensor input) => input.any();

    /// <summary>Whether any element along a dim is nonzero.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor any(Tensor input, long dim, bool keepdim = false) => input.any(dim, keepdim);

    /// <summary>Whether every element is nonzero.</summary>
    /// <param name="input">The input tensor.</param>
    /// <returns>A 0-d bool tensor.</returns>
    public static Tensor all(Tensor input) => input.all();

    /// <summary>Whether every element along a dim is nonzero.</summary>
    /// <param name="input">The input tensor.</param>
    /// <param name="dim">The dim.</param>
    /// <param name="keepdim">Keep it with size 1.</param>
    /// <returns>A bool tensor.</returns>
    public static Tensor all(Tensor input, long dim, bool keepdim = false) => input.all(dim, keepdim);

    // ---------------- linear algebra ----------------

    /// <summary>Matrix product with NumPy semantics (1-D operands are vectors; batch dims broadcast).</summary>
    /// <param name="input">Left operand.</param>
    /// <param name="other">Right operand.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor matmul(Tensor input, Tensor other) => input.matmul(other);

    /// <summary>Product of two 2-D matrices.</summary>
    /// <param name="input">Left matrix.</param>
    /// <param name="mat2">Right matrix.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mm(Tensor input, Tensor mat2) => input.mm(mat2);

    /// <summary>Batched matrix product of 3-D tensors.</summary>
    /// <param name="input">Left batch.</param>
    /// <param name="mat2">Right batch.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor bmm(Tensor input, Tensor mat2) => input.bmm(mat2);

    /// <summary>Matrix-vector product.</summary>
    /// <param name="input">The matrix.</param>
    /// <param name="vec">The vector.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor mv(Tensor input, Tensor vec) => input.mv(vec);

    /// <summary>beta × input + alpha × (mat1 @ mat2).</summary>
    /// <param name="input">The added tensor (broadcast to the product's shape).</param>
    /// <param name="mat1">Left matrix.</param>
    /// <param name="mat2">Right matrix.</param>
    /// <param name="beta">Scale of <paramref name="input"/>.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor addmm(Tensor input, Tensor mat1, Tensor mat2, double beta = 1, double alpha = 1) => input.addmm(mat1, mat2, beta, alpha);

    /// <summary>beta × input + alpha × bmm(batch1, batch2).</summary>
    /// <param name="input">The added tensor.</param>
    /// <param name="batch1">Left batch.</param>
    /// <param name="batch2">Right batch.</param>
    /// <param name="beta">Scale of <paramref name="input"/>.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor baddbmm(Tensor input, Tensor batch1, Tensor batch2, double beta = 1, double alpha = 1) => input.baddbmm(batch1, batch2, beta, alpha);

    /// <summary>Outer product of two vectors.</summary>
    /// <param name="input">First vector.</param>
    /// <param name="vec2">Second vector.</param>
    /// <returns>A new tensor.</returns>
    public static Tensor outer(Tensor input, Tensor vec2) => input.outer(vec2);

    /// <summary>Dot product of two 1-D tensors.</summary>
    /// <param name="input">First vector.</param>
    /// <param name="other">Second vector.</param>
    /// <returns>A 0-d tensor.</returns>
    public static Tensor dot(Tensor input, Tensor other) => input.dot(other);

    /// <summary>Einstein summation, e.g. <c>einsum("bij,bjk->bik", a, b)</c>.</summary>
    /// <param name="equation">Subscripts of each operand, optionally "->" and the output subscripts ("..." for broadcast dims).</param>
    /// <param name="tensors">The operands.</param>
    /// <returns>A new tensor.</returns>
    public static unsafe Tensor einsum(string equation, params Tensor[] tensors)
    {
        ArgumentNullException.ThrowIfNull(equation);
        ArgumentNullException.ThrowIfNull(tensors);
        int n = tensors.Length;
        IntPtr* handles = stackalloc IntPtr[n <= 16 ? n : 0];
        IntPtr[]? heap = n <= 16 ? null : new IntPtr[n];
        fixed (IntPtr* h = heap)
        {
            var p = heap is null ? handles : h;
            for (int i = 0; i < n; i++)
            {
                var t = tensors[i] ?? throw new ArgumentNullException(nameof(tensors), $"einsum operand {i} is null");
                p[i] = t.Handle.DangerousGetHandle();
            }
            var r = NativeMethods.lr_math_einsum(equation, p, n);
            GC.KeepAlive(tensors);
            return Tensor.Wrap(r);
        }
    }
}
