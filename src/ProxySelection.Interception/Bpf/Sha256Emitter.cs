namespace ProxySelection.Interception.Bpf;

/// <summary>
/// Where the emitted SHA-256 keeps its work in a map value (the BPF stack is 512 bytes for the whole call chain): the
/// message schedule, the chaining state (host-order words), the padded message blocks and the outer block.
/// </summary>
public static class Sha256Layout
{
    public const short W = 0;                 // 64 words
    public const short State = 256;           // 8 words
    public const short Message = 288;         // up to 3 blocks: HMAC inputs of at most 183 bytes
    public const short MaxMessageBlocks = 3;
    public const short OuterBlock = Message + (MaxMessageBlocks * 64);
    public const int Size = OuterBlock + 64;
}

/// <summary>
/// Emits SHA-256 for the kernel: the compression function as one bpf-to-bpf subprogram (unrolled: every access at a
/// constant offset, so the verifier checks bounds once per instruction), and HMAC-SHA256 over a message already in the
/// scratch value, starting from midstates the daemon computed (<see cref="Sha256Block.HmacMidstates"/>). 32-bit ALU
/// throughout; a rotate is two shifts and an or.
/// </summary>
public static class Sha256Emitter
{
    /// <summary>
    /// Emits the compression subprogram at <paramref name="entry"/>: r1 = the scratch map value, r2 = the 64-byte
    /// block (big-endian words) inside it; updates the state at <see cref="Sha256Layout.State"/>. Uses 32 bytes of its
    /// own stack for the working variables.
    /// </summary>
    public static void EmitCompress(BpfAssembler a, BpfLabel entry)
    {
        a.Mark(entry);
        a.Mov64(Reg.R6, Reg.R1);
        a.Mov64(Reg.R7, Reg.R2);
        for (int i = 0; i < 16; i++)
        {
            a.Load(BpfSize.W, Reg.R0, Reg.R7, (short)(i * 4));
            a.ToBigEndian(Reg.R0, 32);
            a.Store(BpfSize.W, Reg.R6, WordAt(i), Reg.R0);
        }

        for (int i = 16; i < 64; i++)
        {
            // W[i] = σ1(W[i-2]) + W[i-7] + σ0(W[i-15]) + W[i-16]
            EmitSmallSigma(a, WordAt(i - 15), Reg.R3, Reg.R4, 7, 18, 3);
            EmitSmallSigma(a, WordAt(i - 2), Reg.R4, Reg.R5, 17, 19, 10);
            a.Alu32(AluOp.Add, Reg.R3, Reg.R4);
            a.Load(BpfSize.W, Reg.R2, Reg.R6, WordAt(i - 16));
            a.Alu32(AluOp.Add, Reg.R3, Reg.R2);
            a.Load(BpfSize.W, Reg.R2, Reg.R6, WordAt(i - 7));
            a.Alu32(AluOp.Add, Reg.R3, Reg.R2);
            a.Store(BpfSize.W, Reg.R6, WordAt(i), Reg.R3);
        }

        for (int k = 0; k < 8; k++)
        {
            a.Load(BpfSize.W, Reg.R2, Reg.R6, (short)(Sha256Layout.State + (k * 4)));
            a.Store(BpfSize.W, Reg.R10, Slot(k), Reg.R2);
        }

        for (int i = 0; i < 64; i++)
        {
            // The eight variables rotate through the stack slots instead of moving: at round i, variable k is slot k - i.
            short va = Slot(0 - i), vb = Slot(1 - i), vc = Slot(2 - i), vd = Slot(3 - i);
            short ve = Slot(4 - i), vf = Slot(5 - i), vg = Slot(6 - i), vh = Slot(7 - i);
            a.Load(BpfSize.W, Reg.R2, Reg.R10, ve);
            EmitBigSigma(a, Reg.R3, Reg.R4, 6, 11, 25);
            // Ch(e, f, g) = g ^ (e & (f ^ g))
            a.Load(BpfSize.W, Reg.R4, Reg.R10, vf);
            a.Load(BpfSize.W, Reg.R5, Reg.R10, vg);
            a.Alu32(AluOp.Xor, Reg.R4, Reg.R5);
            a.Alu32(AluOp.And, Reg.R4, Reg.R2);
            a.Alu32(AluOp.Xor, Reg.R4, Reg.R5);
            a.Alu32(AluOp.Add, Reg.R3, Reg.R4);
            a.Load(BpfSize.W, Reg.R4, Reg.R10, vh);
            a.Alu32(AluOp.Add, Reg.R3, Reg.R4);
            a.Alu32(AluOp.Add, Reg.R3, unchecked((int)Sha256Block.K[i]));
            a.Load(BpfSize.W, Reg.R4, Reg.R6, WordAt(i));
            a.Alu32(AluOp.Add, Reg.R3, Reg.R4);
            // r3 = T1; e' = d + T1 goes where d was
            a.Load(BpfSize.W, Reg.R4, Reg.R10, vd);
            a.Alu32(AluOp.Add, Reg.R4, Reg.R3);
            a.Store(BpfSize.W, Reg.R10, vd, Reg.R4);
            a.Load(BpfSize.W, Reg.R2, Reg.R10, va);
            EmitBigSigma(a, Reg.R4, Reg.R5, 2, 13, 22);
            // Maj(a, b, c) = (a & b) | (c & (a | b))
            a.Load(BpfSize.W, Reg.R5, Reg.R10, vb);
            a.Mov32(Reg.R8, Reg.R2);
            a.Alu32(AluOp.Or, Reg.R8, Reg.R5);
            a.Load(BpfSize.W, Reg.R9, Reg.R10, vc);
            a.Alu32(AluOp.And, Reg.R8, Reg.R9);
            a.Alu32(AluOp.And, Reg.R5, Reg.R2);
            a.Alu32(AluOp.Or, Reg.R8, Reg.R5);
            a.Alu32(AluOp.Add, Reg.R4, Reg.R8);
            a.Alu32(AluOp.Add, Reg.R4, Reg.R3);
            // a' = T1 + T2 goes where h was
            a.Store(BpfSize.W, Reg.R10, vh, Reg.R4);
        }

        for (int k = 0; k < 8; k++)
        {
            short state = (short)(Sha256Layout.State + (k * 4));
            a.Load(BpfSize.W, Reg.R2, Reg.R6, state);
            a.Load(BpfSize.W, Reg.R3, Reg.R10, Slot(k - 64));
            a.Alu32(AluOp.Add, Reg.R2, Reg.R3);
            a.Store(BpfSize.W, Reg.R6, state, Reg.R2);
        }

        a.Mov64(Reg.R0, 0);
        a.Exit();
    }

    /// <summary>dst = rotr(w, n1) ^ rotr(w, n2) ^ (w >> shift) of schedule word w at <paramref name="word"/> (σ0, σ1); clobbers r2, <paramref name="temp"/>, r0.</summary>
    private static void EmitSmallSigma(BpfAssembler a, short word, Reg dst, Reg temp, int n1, int n2, int shift)
    {
        a.Load(BpfSize.W, Reg.R2, Reg.R6, word);
        a.Rotr32(dst, Reg.R2, n1, Reg.R0);
        a.Rotr32(temp, Reg.R2, n2, Reg.R0);
        a.Alu32(AluOp.Xor, dst, temp);
        a.Alu32(AluOp.Rsh, Reg.R2, shift);
        a.Alu32(AluOp.Xor, dst, Reg.R2);
    }

    /// <summary>dst = rotr(r2, n1) ^ rotr(r2, n2) ^ rotr(r2, n3) (Σ0, Σ1); clobbers <paramref name="temp"/> and r0.</summary>
    private static void EmitBigSigma(BpfAssembler a, Reg dst, Reg temp, int n1, int n2, int n3)
    {
        a.Rotr32(dst, Reg.R2, n1, Reg.R0);
        a.Rotr32(temp, Reg.R2, n2, Reg.R0);
        a.Alu32(AluOp.Xor, dst, temp);
        a.Rotr32(temp, Reg.R2, n3, Reg.R0);
        a.Alu32(AluOp.Xor, dst, temp);
    }

    private static short WordAt(int i) => (short)(Sha256Layout.W + (i * 4));

    private static short Slot(int k) => (short)(-4 * (((k % 8) + 8) % 8 + 1));

    /// <summary>
    /// Emits HMAC-SHA256 of the <paramref name="length"/> message bytes at <see cref="Sha256Layout.Message"/> of the
    /// scratch value in <paramref name="scratch"/>, from the 16 midstate words (inner, outer) at
    /// <paramref name="midstates"/> + <paramref name="midstateOffset"/>. Pads the message in place. The MAC is left in
    /// the state words (host order: word k holds MAC bytes 4k..4k+3 as a big-endian number). Clobbers r0-r5;
    /// <paramref name="scratch"/> and <paramref name="midstates"/> must be callee-saved registers (r6-r9).
    /// </summary>
    public static void EmitHmac(BpfAssembler a, BpfLabel compress, Reg scratch, Reg midstates, short midstateOffset, int length)
    {
        int blocks = Sha256Block.PaddedBlocks(length);
        if (blocks > Sha256Layout.MaxMessageBlocks)
        {
            throw new ArgumentOutOfRangeException(nameof(length), "message longer than the scratch holds");
        }

        var padded = new byte[(blocks * 64) - length];
        padded[0] = 0x80;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(padded.AsSpan(padded.Length - 8), (ulong)(64 + length) * 8);
        EmitStoreBytes(a, scratch, (short)(Sha256Layout.Message + length), padded);
        EmitCopyWords(a, midstates, midstateOffset, scratch, Sha256Layout.State, 8);
        for (int b = 0; b < blocks; b++)
        {
            a.Mov64(Reg.R1, scratch);
            a.Mov64(Reg.R2, scratch);
            a.Alu64(AluOp.Add, Reg.R2, Sha256Layout.Message + (b * 64));
            a.Call(compress);
        }

        // The outer block: the inner digest (big-endian), then padding for 64 + 32 bytes.
        for (int k = 0; k < 8; k++)
        {
            a.Load(BpfSize.W, Reg.R0, scratch, (short)(Sha256Layout.State + (k * 4)));
            a.ToBigEndian(Reg.R0, 32);
            a.Store(BpfSize.W, scratch, (short)(Sha256Layout.OuterBlock + (k * 4)), Reg.R0);
        }

        var outerPad = new byte[32];
        outerPad[0] = 0x80;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(outerPad.AsSpan(24), (64 + 32) * 8);
        EmitStoreBytes(a, scratch, Sha256Layout.OuterBlock + 32, outerPad);
        EmitCopyWords(a, midstates, (short)(midstateOffset + 32), scratch, Sha256Layout.State, 8);
        a.Mov64(Reg.R1, scratch);
        a.Mov64(Reg.R2, scratch);
        a.Alu64(AluOp.Add, Reg.R2, Sha256Layout.OuterBlock);
        a.Call(compress);
    }

    /// <summary>Stores constant bytes at <paramref name="offset"/> from <paramref name="baseReg"/> (a map value: unaligned stores are fine).</summary>
    public static void EmitStoreBytes(BpfAssembler a, Reg baseReg, short offset, ReadOnlySpan<byte> bytes)
    {
        int i = 0;
        for (; i + 4 <= bytes.Length; i += 4)
        {
            a.StoreImm(BpfSize.W, baseReg, (short)(offset + i), System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes[i..]));
        }

        for (; i < bytes.Length; i++)
        {
            a.StoreImm(BpfSize.B, baseReg, (short)(offset + i), bytes[i]);
        }
    }

    private static void EmitCopyWords(BpfAssembler a, Reg from, short fromOffset, Reg to, short toOffset, int words)
    {
        for (int k = 0; k < words; k++)
        {
            a.Load(BpfSize.W, Reg.R0, from, (short)(fromOffset + (k * 4)));
            a.Store(BpfSize.W, to, (short)(toOffset + (k * 4)), Reg.R0);
        }
    }
}
