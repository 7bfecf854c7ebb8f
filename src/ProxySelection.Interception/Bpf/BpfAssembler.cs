using System.Buffers.Binary;

namespace ProxySelection.Interception.Bpf;

/// <summary>A BPF register (r0 return, r1-r5 arguments, r6-r9 callee-saved, r10 frame pointer).</summary>
public enum Reg : byte
{
    R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10,
}

/// <summary>Operand size of a load or store.</summary>
public enum BpfSize : byte
{
    W = 0x00,
    H = 0x08,
    B = 0x10,
    DW = 0x18,
}

/// <summary>ALU operation codes (the high nibble of the opcode).</summary>
public enum AluOp : byte
{
    Add = 0x00, Sub = 0x10, Mul = 0x20, Div = 0x30, Or = 0x40, And = 0x50, Lsh = 0x60, Rsh = 0x70,
    Neg = 0x80, Mod = 0x90, Xor = 0xa0, Mov = 0xb0, Arsh = 0xc0,
}

/// <summary>Conditional jump codes.</summary>
public enum JmpOp : byte
{
    Jeq = 0x10, Jgt = 0x20, Jge = 0x30, Jset = 0x40, Jne = 0x50, Jsgt = 0x60, Jsge = 0x70, Jlt = 0xa0, Jle = 0xb0,
    Jslt = 0xc0, Jsle = 0xd0,
}

/// <summary>A jump or call target inside one <see cref="BpfAssembler"/>.</summary>
public sealed class BpfLabel
{
    internal int Position = -1;
}

/// <summary>
/// Emits eBPF instructions (linux Documentation/bpf/standardization/instruction-set.rst): 8 bytes each, opcode,
/// dst/src nibbles, 16-bit offset, 32-bit immediate, little endian. Labels are resolved by <see cref="Build"/>.
/// </summary>
public sealed class BpfAssembler
{
    private const byte ClassLd = 0x00, ClassLdx = 0x01, ClassSt = 0x02, ClassStx = 0x03, ClassAlu = 0x04, ClassJmp = 0x05,
        ClassAlu64 = 0x07;
    private const byte ModeImm = 0x00, ModeMem = 0x60, SrcX = 0x08;
    private const byte PseudoMapFd = 1, PseudoCall = 1;

    private readonly List<ulong> _code = [];
    private readonly List<(int At, BpfLabel Target, bool Call)> _fixups = [];

    public int Count => _code.Count;

    public static ulong Encode(byte opcode, Reg dst, Reg src, short offset, int imm) =>
        opcode | ((ulong)(((byte)src << 4) | (byte)dst) << 8) | ((ulong)(ushort)offset << 16) | ((ulong)(uint)imm << 32);

    private void Emit(byte opcode, Reg dst, Reg src, short offset, int imm) => _code.Add(Encode(opcode, dst, src, offset, imm));

    public BpfLabel NewLabel() => new();

    public void Mark(BpfLabel label)
    {
        if (label.Position >= 0)
        {
            throw new InvalidOperationException("label placed twice");
        }

        label.Position = _code.Count;
    }

    /// <summary>64-bit ALU with a register source (dst op= src).</summary>
    public void Alu64(AluOp op, Reg dst, Reg src) => Emit((byte)(ClassAlu64 | (byte)op | SrcX), dst, src, 0, 0);

    public void Alu64(AluOp op, Reg dst, int imm) => Emit((byte)(ClassAlu64 | (byte)op), dst, 0, 0, imm);

    /// <summary>32-bit ALU: the result is zero-extended into the 64-bit register.</summary>
    public void Alu32(AluOp op, Reg dst, Reg src) => Emit((byte)(ClassAlu | (byte)op | SrcX), dst, src, 0, 0);

    public void Alu32(AluOp op, Reg dst, int imm) => Emit((byte)(ClassAlu | (byte)op), dst, 0, 0, imm);

    public void Mov64(Reg dst, Reg src) => Alu64(AluOp.Mov, dst, src);

    public void Mov64(Reg dst, int imm) => Alu64(AluOp.Mov, dst, imm);

    public void Mov32(Reg dst, Reg src) => Alu32(AluOp.Mov, dst, src);

    public void Mov32(Reg dst, int imm) => Alu32(AluOp.Mov, dst, imm);

    /// <summary>Byte swap of the low <paramref name="bits"/> to big endian (a swap on this little-endian host).</summary>
    public void ToBigEndian(Reg dst, int bits) => Emit((byte)(ClassAlu | 0xd0 | SrcX), dst, 0, 0, bits);

    /// <summary>32-bit rotate right, as two shifts and an or (BPF has no rotate); clobbers <paramref name="scratch"/>.</summary>
    public void Rotr32(Reg dst, Reg src, int n, Reg scratch)
    {
        Mov32(dst, src);
        Alu32(AluOp.Rsh, dst, n);
        Mov32(scratch, src);
        Alu32(AluOp.Lsh, scratch, 32 - n);
        Alu32(AluOp.Or, dst, scratch);
    }

    public void Load(BpfSize size, Reg dst, Reg src, short offset) => Emit((byte)(ClassLdx | ModeMem | (byte)size), dst, src, offset, 0);

    public void Store(BpfSize size, Reg dst, short offset, Reg src) => Emit((byte)(ClassStx | ModeMem | (byte)size), dst, src, offset, 0);

    public void StoreImm(BpfSize size, Reg dst, short offset, int imm) => Emit((byte)(ClassSt | ModeMem | (byte)size), dst, 0, offset, imm);

    /// <summary>Two-slot 64-bit immediate load.</summary>
    public void LoadImm64(Reg dst, long imm)
    {
        Emit(ClassLd | ModeImm | (byte)BpfSize.DW, dst, 0, 0, (int)imm);
        Emit(0, 0, 0, 0, (int)(imm >> 32));
    }

    /// <summary>Loads a map reference (BPF_PSEUDO_MAP_FD: the verifier replaces the fd by the map).</summary>
    public void LoadMapFd(Reg dst, int mapFd)
    {
        Emit(ClassLd | ModeImm | (byte)BpfSize.DW, dst, (Reg)PseudoMapFd, 0, mapFd);
        Emit(0, 0, 0, 0, 0);
    }

    public void Jump(BpfLabel target) => EmitJump(ClassJmp, 0, 0, 0, target);

    public void Jump(JmpOp op, Reg dst, int imm, BpfLabel target) => EmitJump((byte)(ClassJmp | (byte)op), dst, 0, imm, target);

    public void Jump(JmpOp op, Reg dst, Reg src, BpfLabel target) => EmitJump((byte)(ClassJmp | (byte)op | SrcX), dst, src, 0, target);

    private void EmitJump(byte opcode, Reg dst, Reg src, int imm, BpfLabel target)
    {
        _fixups.Add((_code.Count, target, false));
        Emit(opcode, dst, src, 0, imm);
    }

    /// <summary>Calls kernel helper <paramref name="helper"/> (arguments in r1-r5, result in r0; r1-r5 clobbered).</summary>
    public void CallHelper(int helper) => Emit(ClassJmp | 0x80, 0, 0, 0, helper);

    /// <summary>bpf-to-bpf call of a subprogram placed at <paramref name="target"/> (BPF_PSEUDO_CALL).</summary>
    public void Call(BpfLabel target)
    {
        _fixups.Add((_code.Count, target, true));
        Emit(ClassJmp | 0x80, 0, (Reg)PseudoCall, 0, 0);
    }

    public void Exit() => Emit(ClassJmp | 0x90, 0, 0, 0, 0);

    /// <summary>The program as the bytes BPF_PROG_LOAD takes.</summary>
    public byte[] Build()
    {
        var code = _code.ToArray();
        foreach (var (at, target, call) in _fixups)
        {
            if (target.Position < 0)
            {
                throw new InvalidOperationException("jump to a label never placed");
            }

            int relative = target.Position - (at + 1);
            if (call)
            {
                code[at] = (code[at] & 0x0000_0000_FFFF_FFFFUL) | ((ulong)(uint)relative << 32);
            }
            else
            {
                if (relative is < short.MinValue or > short.MaxValue)
                {
                    throw new InvalidOperationException("jump out of 16-bit range");
                }

                code[at] = (code[at] & 0xFFFF_FFFF_0000_FFFFUL) | ((ulong)(ushort)(short)relative << 16);
            }
        }

        var bytes = new byte[code.Length * 8];
        for (int i = 0; i < code.Length; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), code[i]);
        }

        return bytes;
    }
}
