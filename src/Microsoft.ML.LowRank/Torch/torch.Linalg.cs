using Microsoft.ML.LowRank.Torch.Native;

namespace Microsoft.ML.LowRank.Torch;

public static partial class torch
{
    /// <summary>Linear algebra (PyTorch's <c>torch.linalg</c>). Every function accepts batches of matrices [..., m, n].</summary>
    public static class linalg
    {
        private static Tensor Take(IntPtr p) => new(p);

        /// <summary>Singular value decomposition A = U diag(S) Vh, singular values in descending order.</summary>
        /// <param name="A">Matrix (or batch) [..., m, n].</param>
        /// <param name="full_matrices">True: U is [m, m] and Vh [n, n]. False (the default here, unlike PyTorch's): the
        /// reduced factors U [m, k] and Vh [k, n] with k = min(m, n).</param>
        /// <returns>U, S and Vh.</returns>
        public static (Tensor U, Tensor S, Tensor Vh) svd(Tensor A, bool full_matrices = false)
        {
            Tensor.CheckStatus(NativeMethods.lr_linalg_svd(A.Handle, full_matrices ? 1 : 0, out var u, out var s, out var vh));
            return (Take(u), Take(s), Take(vh));
        }

        /// <summary>The singular values of A in descending order (gradients are better behaved than through <see cref="svd"/>).</summary>
        /// <param name="A">Matrix (or batch).</param>
        /// <returns>The singular values [..., min(m, n)].</returns>
        public static Tensor svdvals(Tensor A) => Tensor.Wrap(NativeMethods.lr_linalg_svdvals(A.Handle));

        /// <summary>QR decomposition A = Q R with Q orthonormal columns and R upper triangular.</summary>
        /// <param name="A">Matrix (or batch) [..., m, n].</param>
        /// <param name="mode">"reduced" (Q [m, k], R [k, n]), "complete" (Q [m, m], R [m, n]) or "r" (R only; Q is empty).</param>
        /// <returns>Q and R.</returns>
        public static (Tensor Q, Tensor R) qr(Tensor A, string mode = "reduced")
        {
            int code = mode switch
            {
                "reduced" => 0,
                "complete" => 1,
                "r" => 2,
                _ => throw new ArgumentException($"mode must be \"reduced\", \"complete\" or \"r\", got \"{mode}\"", nameof(mode)),
            };
            Tensor.CheckStatus(NativeMethods.lr_linalg_qr(A.Handle, code, out var q, out var r));
            return (Take(q), Take(r));
        }

        private static int Uplo(string UPLO) => UPLO switch
        {
            "L" or "l" => 0,
            "U" or "u" => 1,
            _ => throw new ArgumentException($"UPLO must be \"L\" or \"U\", got \"{UPLO}\"", nameof(UPLO)),
        };

        /// <summary>Eigen-decomposition of a symmetric (Hermitian) matrix: A = V diag(w) Vᵀ, eigenvalues ascending.</summary>
        /// <param name="A">Symmetric matrix (or batch); only one triangle is read.</param>
        /// <param name="UPLO">"L": read the lower triangle; "U": the upper.</param>
        /// <returns>The eigenvalues and the eigenvectors (as columns).</returns>
        public static (Tensor eigenvalues, Tensor eigenvectors) eigh(Tensor A, string UPLO = "L")
        {
            Tensor.CheckStatus(NativeMethods.lr_linalg_eigh(A.Handle, Uplo(UPLO), out var w, out var v));
            return (Take(w), Take(v));
        }

        /// <summary>The eigenvalues of a symmetric (Hermitian) matrix, ascending.</summary>
        /// <param name="A">Symmetric matrix (or batch).</param>
        /// <param name="UPLO">"L" or "U": the triangle that is read.</param>
        /// <returns>The eigenvalues.</returns>
        public static Tensor eigvalsh(Tensor A, string UPLO = "L") => Tensor.Wrap(NativeMethods.lr_linalg_eigvalsh(A.Handle, Uplo(UPLO)));

        /// <summary>Solves A X = B (or X A = B when <paramref name="left"/> is false) for square invertible A.</summary>
        /// <param name="A">Square matrix (or batch) [..., n, n].</param>
        /// <param name="B">Right-hand side [..., n, k] or [..., n].</param>
        /// <param name="left">Solve A X = B (true) or X A = B (false).</param>
        /// <returns>X.</returns>
        public static Tensor solve(Tensor A, Tensor B, bool left = true) => Tensor.Wrap(NativeMethods.lr_linalg_solve(A.Handle, B.Handle, left ? 1 : 0));

        /// <summary>The inverse of a square invertible matrix.</summary>
        /// <param name="A">Square matrix (or batch).</param>
        /// <returns>A⁻¹.</returns>
        public static Tensor inv(Tensor A) => Tensor.Wrap(NativeMethods.lr_linalg_inv(A.Handle));

        /// <summary>The Moore-Penrose pseudo-inverse, through the SVD (singular values at or below
        /// max(atol, rtol · σ_max) are treated as zero).</summary>
        /// <param name="A">Matrix (or batch) [..., m, n].</param>
        /// <param name="atol">Absolute threshold (null: 0).</param>
        /// <param name="rtol">Relative threshold (null: eps · max(m, n) when atol is null too, else 0).</param>
        /// <param name="hermitian">A is symmetric (Hermitian): use the eigen-decomposition.</param>
        /// <returns>A⁺ [..., n, m].</returns>
        public static Tensor pinv(Tensor A, double? atol = null, double? rtol = null, bool hermitian = false)
            => Tensor.Wrap(NativeMethods.lr_linalg_pinv(A.Handle, atol ?? 0, atol.HasValue ? 1 : 0, rtol ?? 0, rtol.HasValue ? 1 : 0, hermitian ? 1 : 0));

        /// <summary>The determinant of a square matrix.</summary>
        /// <param name="A">Square matrix (or batch).</param>
        /// <returns>det(A) [...].</returns>
        public static Tensor det(Tensor A) => Tensor.Wrap(NativeMethods.lr_linalg_det(A.Handle));

        /// <summary>Cholesky factor of a symmetric positive-definite matrix: A = L Lᵀ (or Uᵀ U).</summary>
        /// <param name="A">Symmetric positive-definite matrix (or batch).</param>
        /// <param name="upper">Return the upper factor U instead of L.</param>
        /// <returns>The triangular factor.</returns>
        public static Tensor cholesky(Tensor A, bool upper = false) => Tensor.Wrap(NativeMethods.lr_linalg_cholesky(A.Handle, upper ? 1 : 0));

        /// <summary>Frobenius ("fro") or nuclear ("nuc") norm of matrices.</summary>
        /// <param name="A">Matrix (or batch).</param>
        /// <param name="ord">"fro" or "nuc".</param>
        /// <param name="dim">The two dimensions holding the matrices (null: the last two).</param>
        /// <param name="keepdim">Keep the reduced dimensions with size 1.</param>
        /// <param name="dtype">Compute in this type.</param>
        /// <returns>The norms.</returns>
        public static unsafe Tensor matrix_norm(Tensor A, string ord = "fro", long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            int kind = ord switch
            {
                "fro" => 0,
                "nuc" => 1,
                _ => throw new ArgumentException($"ord must be \"fro\" or \"nuc\" (or a number), got \"{ord}\"", nameof(ord)),
            };
            fixed (long* p = dim)
                return Tensor.Wrap(NativeMethods.lr_linalg_matrix_norm_str(A.Handle, kind, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0,
                    dtype.HasValue ? (int)dtype.Value : -1));
        }

        /// <summary>Operator norms of matrices: ord 2 / -2 (largest / smallest singular value), 1 / -1 (max / min column
        /// abs-sum), ∞ / -∞ (max / min row abs-sum).</summary>
        /// <param name="A">Matrix (or batch).</param>
        /// <param name="ord">2, -2, 1, -1, +∞ or -∞.</param>
        /// <param name="dim">The two dimensions holding the matrices (null: the last two).</param>
        /// <param name="keepdim">Keep the reduced dimensions with size 1.</param>
        /// <param name="dtype">Compute in this type.</param>
        /// <returns>The norms.</returns>
        public static unsafe Tensor matrix_norm(Tensor A, double ord, long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            fixed (long* p = dim)
                return Tensor.Wrap(NativeMethods.lr_linalg_matrix_norm(A.Handle, ord, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0,
                    dtype.HasValue ? (int)dtype.Value : -1));
        }

        /// <summary>Vector p-norm (sum |x|^ord)^(1/ord); ord ∞ is the max, -∞ the min, 0 the count of non-zeros.</summary>
        /// <param name="x">The input.</param>
        /// <param name="ord">The order.</param>
        /// <param name="dim">Dimensions to reduce (null: all elements).</param>
        /// <param name="keepdim">Keep the reduced dimensions with size 1.</param>
        /// <param name="dtype">Compute in this type.</param>
        /// <returns>The norms.</returns>
        public static unsafe Tensor vector_norm(Tensor x, double ord = 2, long[]? dim = null, bool keepdim = false, ScalarType? dtype = null)
        {
            fixed (long* p = dim)
                return Tensor.Wrap(NativeMethods.lr_linalg_vector_norm(x.Handle, ord, p, dim is null ? -1 : dim.Length, keepdim ? 1 : 0,
                    dtype.HasValue ? (int)dtype.Value : -1));
        }
    }
}
