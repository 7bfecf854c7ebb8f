namespace ProxySelection.Interception.Bpf;

/// <summary>
/// The tc egress half of signing MPTCP segments. On 6.18 bpf_store_hdr_opt refuses a kind-30 option when the header
/// already has one (its duplicate check matches by kind alone, and MP_CAPABLE is kind 30), so the sock_ops program
/// stores the signed option under the experimental kind 253 (RFC 6994: the "magic" is MP_PROXY's own bytes 2-3,
/// 0xF1 0xA5, which no other option carries), its tag computed over kind 30. This program, on the interface's egress,
/// puts kind 30 back on SYNs whose last 8 or 16 header bytes are that placeholder (the option area sock_ops writes
/// is the header's tail, 4-byte aligned) and fixes the TCP checksum. Everything else passes untouched. With
/// <see cref="TokenLearningMaps"/> it also learns the tokens of the listener's MPTCP SYN/ACKs (<see cref="TokenLearning"/>).
/// </summary>
internal static class EgressRelabelProgram
{
    public const byte PlaceholderKind = 253;
    private const short SkbMark = 8, SkbProtocol = 16, SkbData = 76, SkbDataEnd = 80; // struct __sk_buff (protocol: network order)
    private const int EthPIpRaw = 0x0008, EthPIpv6Raw = 0xDD86;
    private const int HelperStoreBytes = 9, HelperL4CsumReplace = 11;
    private const short Buffer = -8, Kind = -12;
    private const int TcxNext = -1;

    public static byte[] Emit(int counterMap, int linkHeaderLength, uint slotMask, TokenLearningMaps? learning = null)
    {
        var a = new BpfAssembler();
        var pass = a.NewLabel();
        var learn = a.NewLabel();
        var compress = a.NewLabel();
        var v6 = a.NewLabel();
        var tcp = a.NewLabel();
        a.Mov64(Reg.R6, Reg.R1);
        // Only this host's marked segments (skb->mark is the socket's SO_MARK, the listener's for a SYN/ACK): a
        // forwarded packet is never rewritten, and unmarked traffic leaves after one load.
        a.Load(BpfSize.W, Reg.R2, Reg.R6, SkbMark);
        a.Alu32(AluOp.And, Reg.R2, unchecked((int)slotMask));
        a.Jump(JmpOp.Jeq, Reg.R2, 0, pass);
        // Every packet on the interface comes here: direct packet reads decide "not a TCP SYN" without a helper call.
        a.Load(BpfSize.W, Reg.R2, Reg.R6, SkbData);
        a.Load(BpfSize.W, Reg.R3, Reg.R6, SkbDataEnd);
        a.Load(BpfSize.W, Reg.R4, Reg.R6, SkbProtocol);
        a.Jump(JmpOp.Jeq, Reg.R4, EthPIpv6Raw, v6);
        a.Jump(JmpOp.Jne, Reg.R4, EthPIpRaw, pass);
        a.Mov64(Reg.R5, Reg.R2);
        a.Alu64(AluOp.Add, Reg.R5, linkHeaderLength + 20);
        a.Jump(JmpOp.Jgt, Reg.R5, Reg.R3, pass);
        a.Load(BpfSize.B, Reg.R4, Reg.R2, (short)(linkHeaderLength + 9));
        a.Jump(JmpOp.Jne, Reg.R4, 6, pass);
        a.Load(BpfSize.B, Reg.R7, Reg.R2, (short)linkHeaderLength);
        a.Alu64(AluOp.And, Reg.R7, 0xF);
        a.Alu64(AluOp.Lsh, Reg.R7, 2);
        a.Alu64(AluOp.Add, Reg.R7, linkHeaderLength);
        a.Jump(tcp);

        // IPv6: a SYN with extension headers before TCP is left alone.
        a.Mark(v6);
        a.Mov64(Reg.R5, Reg.R2);
        a.Alu64(AluOp.Add, Reg.R5, linkHeaderLength + 40);
        a.Jump(JmpOp.Jgt, Reg.R5, Reg.R3, pass);
        a.Load(BpfSize.B, Reg.R4, Reg.R2, (short)(linkHeaderLength + 6));
        a.Jump(JmpOp.Jne, Reg.R4, 6, pass);
        a.Mov64(Reg.R7, linkHeaderLength + 40);

        a.Mark(tcp);
        a.Mov64(Reg.R5, Reg.R2);
        a.Alu64(AluOp.Add, Reg.R5, Reg.R7);
        a.Mov64(Reg.R4, Reg.R5);
        a.Alu64(AluOp.Add, Reg.R4, 20);
        a.Jump(JmpOp.Jgt, Reg.R4, Reg.R3, pass);
        a.Load(BpfSize.B, Reg.R4, Reg.R5, 13);
        a.Alu64(AluOp.And, Reg.R4, 0x02);
        a.Jump(JmpOp.Jeq, Reg.R4, 0, pass);
        a.Load(BpfSize.B, Reg.R8, Reg.R5, 12);
        a.Alu64(AluOp.Rsh, Reg.R8, 4);
        a.Alu64(AluOp.Lsh, Reg.R8, 2);
        foreach (int form in new[] { 16, 8 })
        {
            var next = a.NewLabel();
            a.Jump(JmpOp.Jlt, Reg.R8, 20 + form, next);
            a.Mov64(Reg.R9, Reg.R7);
            a.Alu64(AluOp.Add, Reg.R9, Reg.R8);
            a.Alu64(AluOp.Sub, Reg.R9, form);
            a.Mov64(Reg.R2, Reg.R9);
            LoadBytesAt(a, 4, pass);
            a.Load(BpfSize.W, Reg.R2, Reg.R10, Buffer);
            a.Mov32(Reg.R3, PlaceholderKind | (form << 8) | (0xF1 << 16) | unchecked((int)0xA500_0000));
            a.Jump(JmpOp.Jne, Reg.R2, Reg.R3, next);
            a.StoreImm(BpfSize.W, Reg.R10, Kind, 30);
            a.Mov64(Reg.R1, Reg.R6);
            a.Mov64(Reg.R2, Reg.R9);
            a.Mov64(Reg.R3, Reg.R10);
            a.Alu64(AluOp.Add, Reg.R3, Kind);
            a.Mov64(Reg.R4, 1);
            a.Mov64(Reg.R5, 0);
            a.CallHelper(HelperStoreBytes);
            a.Jump(JmpOp.Jne, Reg.R0, 0, pass);
            // The kind/length pair is one 16-bit word of the checksum (the option starts 4-byte aligned).
            a.Mov64(Reg.R1, Reg.R6);
            a.Mov64(Reg.R2, Reg.R7);
            a.Alu64(AluOp.Add, Reg.R2, 16);
            a.Mov64(Reg.R3, PlaceholderKind | (form << 8));
            a.Mov64(Reg.R4, 30 | (form << 8));
            a.Mov64(Reg.R5, 2);
            a.CallHelper(HelperL4CsumReplace);
            SigningProgram.EmitCountInline(a, counterMap, SignerCounter.Relabelled);
            a.Jump(learn);
            a.Mark(next);
        }

        a.Mark(learn);
        if (learning is { } maps)
        {
            // The listener's own SYN/ACK only: a forwarded server's (pass-through) never carries a slot mark, and an
            // upstream leg's SYN carries another slot.
            a.Load(BpfSize.W, Reg.R2, Reg.R6, SkbMark);
            a.Alu32(AluOp.And, Reg.R2, unchecked((int)slotMask));
            a.Jump(JmpOp.Jne, Reg.R2, unchecked((int)maps.ListenerMark), pass);
            TokenLearning.Emit(a, maps.TokenMap, maps.ScratchMap, maps.StateMap, counterMap, compress, Reg.R7, Reg.R8, pass);
        }

        a.Mark(pass);
        a.Mov64(Reg.R0, TcxNext);
        a.Exit();
        if (learning is not null)
        {
            Sha256Emitter.EmitCompress(a, compress);
        }

        return a.Build();
    }

    /// <summary>bpf_skb_load_bytes(skb, r2, fp-8, length); jumps to <paramref name="fail"/> when the packet is shorter.</summary>
    private static void LoadBytesAt(BpfAssembler a, int length, BpfLabel fail)
    {
        a.StoreImm(BpfSize.DW, Reg.R10, Buffer, 0);
        TcpOptionScan.EmitLoadBytes(a, Buffer, length, fail);
    }
}

/// <summary>The maps (descriptors) and the listener's mark bits the egress program learns tokens with.</summary>
internal readonly record struct TokenLearningMaps(int TokenMap, int ScratchMap, int StateMap, uint ListenerMark);
