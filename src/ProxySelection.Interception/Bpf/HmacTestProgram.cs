namespace ProxySelection.Interception.Bpf;

/// <summary>
/// The emitted HMAC alone, for BPF_PROG_TEST_RUN: a SCHED_CLS program that takes the first <c>length</c> packet bytes as
/// the message and leaves the MAC in the scratch value's state words. Pins the crypto apart from sock_ops.
/// </summary>
internal static class HmacTestProgram
{
    private const short SkbData = 76, SkbDataEnd = 80; // struct __sk_buff

    public static byte[] Emit(int scratchMap, int midstateMap, int length)
    {
        var a = new BpfAssembler();
        var done = a.NewLabel();
        var compress = a.NewLabel();
        a.Mov64(Reg.R6, Reg.R1);
        a.Load(BpfSize.W, Reg.R9, Reg.R6, SkbData);
        a.Load(BpfSize.W, Reg.R3, Reg.R6, SkbDataEnd);
        a.Mov64(Reg.R4, Reg.R9);
        a.Alu64(AluOp.Add, Reg.R4, length);
        a.Jump(JmpOp.Jgt, Reg.R4, Reg.R3, done);
        SigningProgram.EmitLookup(a, scratchMap, Reg.R8, done);
        SigningProgram.EmitLookup(a, midstateMap, Reg.R7, done);
        for (int i = 0; i < length; i++)
        {
            a.Load(BpfSize.B, Reg.R0, Reg.R9, (short)i);
            a.Store(BpfSize.B, Reg.R8, (short)(Sha256Layout.Message + i), Reg.R0);
        }

        Sha256Emitter.EmitHmac(a, compress, Reg.R8, Reg.R7, 0, length);
        a.Mark(done);
        a.Mov64(Reg.R0, 0);
        a.Exit();
        Sha256Emitter.EmitCompress(a, compress);
        return a.Build();
    }
}
