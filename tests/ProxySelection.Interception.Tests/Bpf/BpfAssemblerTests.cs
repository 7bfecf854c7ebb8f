using ProxySelection.Interception.Bpf;

namespace ProxySelection.Interception.Tests.Bpf;

/// <summary>
/// The assembler's encodings against the kernel's own instruction macros (include/linux/filter.h), byte for byte:
/// opcode, dst in the low nibble and src in the high nibble of byte 1, offset, immediate, little endian.
/// </summary>
[TestFixture]
public sealed class BpfAssemblerTests
{
    private static string Hex(Action<BpfAssembler> emit)
    {
        var a = new BpfAssembler();
        emit(a);
        return Convert.ToHexString(a.Build()).ToLowerInvariant();
    }

    [Test]
    public void Mov64Imm_And_Exit_MatchKernelMacros() =>
        Assert.That(Hex(a => { a.Mov64(Reg.R0, 1); a.Exit(); }), Is.EqualTo("b700000001000000" + "9500000000000000"));

    [Test]
    public void LoadWord_DstLowNibble_SrcHighNibble() =>
        Assert.That(Hex(a => a.Load(BpfSize.W, Reg.R2, Reg.R6, 212)), Is.EqualTo("6162d40000000000"));

    [Test]
    public void StoreDoubleword_NegativeOffsetTwosComplement() =>
        Assert.That(Hex(a => a.Store(BpfSize.DW, Reg.R10, -8, Reg.R2)), Is.EqualTo("7b2af8ff00000000"));

    [Test]
    public void StoreImmediateWordAndByte() =>
        Assert.That(Hex(a => { a.StoreImm(BpfSize.W, Reg.R10, -20, 3); a.StoreImm(BpfSize.B, Reg.R8, 314, 0x80); }),
            Is.EqualTo("620aecff03000000" + "72083a0180000000"));

    [Test]
    public void Alu32RegisterAndImmediate() =>
        Assert.That(Hex(a => { a.Alu32(AluOp.Add, Reg.R3, Reg.R4); a.Alu32(AluOp.Rsh, Reg.R2, 3); a.Alu32(AluOp.Xor, Reg.R4, Reg.R5); }),
            Is.EqualTo("0c43000000000000" + "7402000003000000" + "ac54000000000000"));

    [Test]
    public void Alu64AndWithNegativeImmediate() =>
        Assert.That(Hex(a => a.Alu64(AluOp.Add, Reg.R2, -16)), Is.EqualTo("07020000f0ffffff"));

    [Test]
    public void ToBigEndian32_IsEndOpcodeWithToBeSource() =>
        Assert.That(Hex(a => a.ToBigEndian(Reg.R0, 32)), Is.EqualTo("dc00000020000000"));

    [Test]
    public void Rotr32_IsShiftRightShiftLeftOr() =>
        Assert.That(Hex(a => a.Rotr32(Reg.R3, Reg.R2, 7, Reg.R0)),
            Is.EqualTo("bc23000000000000" + "7403000007000000" + "bc20000000000000" + "6400000019000000" + "4c03000000000000"));

    [Test]
    public void ForwardAndBackwardJumps_OffsetsRelativeToNextInstruction()
    {
        string hex = Hex(a =>
        {
            var back = a.NewLabel();
            var forward = a.NewLabel();
            a.Mark(back);
            a.Jump(JmpOp.Jeq, Reg.R2, 11, forward);   // 0: skips 1 → +1
            a.Jump(JmpOp.Jgt, Reg.R4, Reg.R3, back);  // 1: back to 0 → -2
            a.Mark(forward);
            a.Jump(back);                              // 2: → -3
        });
        Assert.That(hex, Is.EqualTo("150201000b000000" + "2d34feff00000000" + "0500fdff00000000"));
    }

    [Test]
    public void MapFdLoad_IsTwoSlotsWithPseudoMapFdSource() =>
        Assert.That(Hex(a => a.LoadMapFd(Reg.R1, 5)), Is.EqualTo("1811000005000000" + "0000000000000000"));

    [Test]
    public void LoadImm64_SplitsHighWordIntoSecondSlot() =>
        Assert.That(Hex(a => a.LoadImm64(Reg.R2, 0x1122334455667788)), Is.EqualTo("1802000088776655" + "0000000044332211"));

    [Test]
    public void HelperCall_And_PseudoCall_ImmediateIsHelperIdOrRelativeTarget()
    {
        string hex = Hex(a =>
        {
            var sub = a.NewLabel();
            a.CallHelper(59);
            a.Call(sub);      // 1 → target 3: imm = 3 - 2 = 1
            a.Exit();
            a.Mark(sub);
            a.Exit();
        });
        Assert.That(hex, Is.EqualTo("850000003b000000" + "8510000001000000" + "9500000000000000" + "9500000000000000"));
    }

    [Test]
    public void JumpToUnplacedLabel_Throws()
    {
        var a = new BpfAssembler();
        a.Jump(a.NewLabel());
        Assert.That(a.Build, Throws.InvalidOperationException);
    }
}
