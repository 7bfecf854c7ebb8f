using System.Text;

namespace ProxySelection.Interception.Bpf;

/// <summary>The counters the signing program keeps (per-CPU array, one u64 each).</summary>
internal enum SignerCounter
{
    SynSigned = 0,
    SynAckSigned = 1,
    NoRoom = 2,
    Error = 3,
    Placeholder = 4,
    Relabelled = 5,
    TokensLearnt = 6,
    JoinsTaken = 7,
    JoinsPassed = 8,
}

/// <summary>
/// Emits the cgroup sock_ops program that writes the signed MP_PROXY option (spec §5, tag §9.2) on the SYNs and
/// SYN/ACKs of sockets this proxy marked. Layout of the config map's one value: the HMAC inner and outer midstates
/// (16 host-order words), then one 16-byte entry per slot value: option prefix (8 bytes, zero padded), prefix
/// length, tag length.
/// </summary>
internal static class SigningProgram
{
    // struct bpf_sock_ops (uapi/linux/bpf.h) offsets
    private const short Op = 0, Family = 20, RemoteIp4 = 24, LocalIp4 = 28, RemoteIp6 = 32, LocalIp6 = 48, CbFlags = 84,
        Sk = 184, SkbData = 192, SkbDataEnd = 200, SkbTcpFlags = 212;
    private const short BpfSockMark = 16; // struct bpf_sock.mark
    private const int OpConnect = 3, OpActiveEstablished = 4, OpPassiveEstablished = 5, OpListen = 11, OpHdrOptLen = 14,
        OpWriteHdrOpt = 15;
    private const int WriteHdrOptFlag = 0x40;
    private const int HelperLookup = 1, HelperCbFlagsSet = 59, HelperLoadHdrOpt = 142, HelperStoreHdrOpt = 143, HelperReserveHdrOpt = 144;
    private const int LoadHdrOptTcpSyn = 1; // BPF_LOAD_HDR_OPT_TCP_SYN: search the SYN a SYN/ACK answers
    private const int OptionMptcp = 30, MptcpSubtypeJoin = 1;
    private const int TcpSyn = 0x02, TcpAck = 0x10;
    private const int AfInet = 2, AfInet6 = 10;

    public const short EntriesOffset = 64;
    public const int EntrySize = 16;
    private const short Option = -16; // the option on the stack: fp-16..fp-1
    private const short Key = -20;

    internal static readonly byte[] Label = Encoding.ASCII.GetBytes("ProxySelection MP_PROXY v1");

    public static int ConfigSize(int slotValues) => EntriesOffset + (slotValues * EntrySize);

    public static byte[] Emit(int configMap, int scratchMap, int counterMap, uint slotMask, int listenerValue)
    {
        int shift = System.Numerics.BitOperations.TrailingZeroCount(slotMask);
        var a = new BpfAssembler();
        var done = a.NewLabel();
        var error = a.NewLabel();
        var compress = a.NewLabel();
        var listen = a.NewLabel();
        var connect = a.NewLabel();
        var established = a.NewLabel();
        var len = a.NewLabel();
        var write = a.NewLabel();

        a.Mov64(Reg.R6, Reg.R1);
        a.Load(BpfSize.W, Reg.R2, Reg.R6, Op);
        a.Jump(JmpOp.Jeq, Reg.R2, OpListen, listen);
        a.Jump(JmpOp.Jeq, Reg.R2, OpConnect, connect);
        a.Jump(JmpOp.Jeq, Reg.R2, OpActiveEstablished, established);
        a.Jump(JmpOp.Jeq, Reg.R2, OpPassiveEstablished, established);
        a.Jump(JmpOp.Jeq, Reg.R2, OpHdrOptLen, len);
        a.Jump(JmpOp.Jeq, Reg.R2, OpWriteHdrOpt, write);
        a.Jump(done);

        // Listeners and connecting sockets are locked full sockets here: the mark decides, once.
        a.Mark(listen);
        EmitReadSlot(a, slotMask, shift, done);
        a.Jump(JmpOp.Jne, Reg.R2, listenerValue, done);
        EmitSetFlags(a, set: true);
        a.Jump(done);

        a.Mark(connect);
        EmitReadSlot(a, slotMask, shift, done);
        a.Jump(JmpOp.Jeq, Reg.R2, 0, done);
        a.Jump(JmpOp.Jeq, Reg.R2, listenerValue, done);
        EmitSetFlags(a, set: true);
        a.Jump(done);

        // Established (and accepted children, which inherit the listener's flags): no data segment runs the program.
        a.Mark(established);
        a.Load(BpfSize.W, Reg.R2, Reg.R6, CbFlags);
        a.Mov64(Reg.R3, Reg.R2);
        a.Alu64(AluOp.And, Reg.R3, WriteHdrOptFlag);
        a.Jump(JmpOp.Jeq, Reg.R3, 0, done);
        EmitSetFlags(a, set: false);
        a.Jump(done);

        a.Mark(len);
        EmitSegmentSlot(a, slotMask, shift, listenerValue, done);
        EmitLookup(a, configMap, Reg.R7, done);
        EmitEntry(a);
        a.Load(BpfSize.B, Reg.R2, Reg.R9, 8);
        a.Jump(JmpOp.Jeq, Reg.R2, 0, done);
        a.Load(BpfSize.B, Reg.R3, Reg.R9, 9);
        a.Alu64(AluOp.Add, Reg.R2, Reg.R3);
        a.Mov64(Reg.R1, Reg.R6);
        a.Mov64(Reg.R3, 0);
        a.CallHelper(HelperReserveHdrOpt);
        a.Jump(JmpOp.Jeq, Reg.R0, 0, done);
        EmitCount(a, counterMap, SignerCounter.NoRoom, done);

        a.Mark(write);
        a.Load(BpfSize.W, Reg.R2, Reg.R6, SkbTcpFlags);
        a.Mov64(Reg.R3, Reg.R2);
        a.Alu64(AluOp.And, Reg.R3, TcpSyn);
        a.Jump(JmpOp.Jeq, Reg.R3, 0, done);
        var writeSynAck = a.NewLabel();
        a.Alu64(AluOp.And, Reg.R2, TcpAck);
        a.Jump(JmpOp.Jne, Reg.R2, 0, writeSynAck);
        EmitReadSlot(a, slotMask, shift, done);
        EmitWriteSegment(a, configMap, scratchMap, counterMap, synAck: false, compress, done, error);
        a.Mark(writeSynAck);
        a.Mov64(Reg.R2, listenerValue);
        EmitWriteSegment(a, configMap, scratchMap, counterMap, synAck: true, compress, done, error);

        a.Mark(error);
        EmitCount(a, counterMap, SignerCounter.Error, done);
        a.Mark(done);
        a.Mov64(Reg.R0, 1);
        a.Exit();

        Sha256Emitter.EmitCompress(a, compress);
        return a.Build();
    }

    /// <summary>r2 = the slot bits of the socket's mark; jumps to <paramref name="none"/> when there is no full socket.</summary>
    private static void EmitReadSlot(BpfAssembler a, uint slotMask, int shift, BpfLabel none)
    {
        a.Load(BpfSize.DW, Reg.R1, Reg.R6, Sk);
        a.Jump(JmpOp.Jeq, Reg.R1, 0, none);
        a.Load(BpfSize.W, Reg.R2, Reg.R1, BpfSockMark);
        a.Alu32(AluOp.And, Reg.R2, unchecked((int)slotMask));
        a.Alu32(AluOp.Rsh, Reg.R2, shift);
    }

    private static void EmitSetFlags(BpfAssembler a, bool set)
    {
        a.Load(BpfSize.W, Reg.R2, Reg.R6, CbFlags);
        if (set)
        {
            a.Alu32(AluOp.Or, Reg.R2, WriteHdrOptFlag);
        }
        else
        {
            a.Alu32(AluOp.And, Reg.R2, ~WriteHdrOptFlag);
        }

        a.Mov64(Reg.R1, Reg.R6);
        a.CallHelper(HelperCbFlagsSet);
    }

    /// <summary>
    /// r2 = the slot value for this segment: a SYN/ACK is a listener's (the listener's flag decided), a SYN its
    /// socket's mark. Only SYNs and SYN/ACKs go on.
    /// </summary>
    private static void EmitSegmentSlot(BpfAssembler a, uint slotMask, int shift, int listenerValue, BpfLabel done)
    {
        var synAck = a.NewLabel();
        var have = a.NewLabel();
        a.Load(BpfSize.W, Reg.R2, Reg.R6, SkbTcpFlags);
        a.Mov64(Reg.R3, Reg.R2);
        a.Alu64(AluOp.And, Reg.R3, TcpSyn);
        a.Jump(JmpOp.Jeq, Reg.R3, 0, done);
        a.Alu64(AluOp.And, Reg.R2, TcpAck);
        a.Jump(JmpOp.Jne, Reg.R2, 0, synAck);
        EmitReadSlot(a, slotMask, shift, done);
        a.Jump(have);
        a.Mark(synAck);
        EmitSkipJoinSynAck(a, done);
        a.Mov64(Reg.R2, listenerValue);
        a.Mark(have);
        a.Mov64(Reg.R9, Reg.R2);
    }

    /// <summary>
    /// To <paramref name="done"/> when the SYN this SYN/ACK answers is an MP_JOIN: a join is steered by its token, and its
    /// SYN/ACK has room for the presence form at most, which the holder MAY add (spec §5.7, §7.8) and this proxy does not
    /// (nor does the queue's signer). The SYN/ACK is neither reserved for nor counted as no room: that counter counted every
    /// join the listener answered. The SYN's first MPTCP option decides; where the kernel no longer holds the SYN (a
    /// retransmitted SYN/ACK) the segment goes on as before.
    /// </summary>
    private static void EmitSkipJoinSynAck(BpfAssembler a, BpfLabel done)
    {
        var notJoin = a.NewLabel();
        a.StoreImm(BpfSize.DW, Reg.R10, Option, 0);
        a.StoreImm(BpfSize.DW, Reg.R10, Option + 8, 0);
        a.StoreImm(BpfSize.B, Reg.R10, Option, OptionMptcp);
        a.Mov64(Reg.R1, Reg.R6);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, Option);
        a.Mov64(Reg.R3, 16);
        a.Mov64(Reg.R4, LoadHdrOptTcpSyn);
        a.CallHelper(HelperLoadHdrOpt);
        // The option's length, or a negative error (none in the SYN, no SYN held); a subtype needs its third byte.
        a.Jump(JmpOp.Jslt, Reg.R0, 3, notJoin);
        a.Load(BpfSize.B, Reg.R2, Reg.R10, Option + 2);
        a.Alu64(AluOp.Rsh, Reg.R2, 4);
        a.Jump(JmpOp.Jeq, Reg.R2, MptcpSubtypeJoin, done);
        a.Mark(notJoin);
    }

    /// <summary>Looks up key 0 of <paramref name="map"/> into <paramref name="into"/> (a callee-saved register).</summary>
    internal static void EmitLookup(BpfAssembler a, int map, Reg into, BpfLabel missing)
    {
        a.StoreImm(BpfSize.W, Reg.R10, Key, 0);
        a.LoadMapFd(Reg.R1, map);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, Key);
        a.CallHelper(HelperLookup);
        a.Jump(JmpOp.Jeq, Reg.R0, 0, missing);
        a.Mov64(into, Reg.R0);
    }

    /// <summary>r9 (the slot value, bounded by the mask) becomes the pointer to its entry in the config value (r7).</summary>
    private static void EmitEntry(BpfAssembler a)
    {
        a.Alu64(AluOp.And, Reg.R9, 0xF);
        a.Alu64(AluOp.Lsh, Reg.R9, 4);
        a.Alu64(AluOp.Add, Reg.R9, Reg.R7);
        a.Alu64(AluOp.Add, Reg.R9, EntriesOffset);
    }

    internal static void EmitCountInline(BpfAssembler a, int counterMap, SignerCounter counter)
    {
        var skip = a.NewLabel();
        a.StoreImm(BpfSize.W, Reg.R10, Key, (int)counter);
        a.LoadMapFd(Reg.R1, counterMap);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, Key);
        a.CallHelper(HelperLookup);
        a.Jump(JmpOp.Jeq, Reg.R0, 0, skip);
        a.Load(BpfSize.DW, Reg.R1, Reg.R0, 0);
        a.Alu64(AluOp.Add, Reg.R1, 1);
        a.Store(BpfSize.DW, Reg.R0, 0, Reg.R1);
        a.Mark(skip);
    }

    private static void EmitCount(BpfAssembler a, int counterMap, SignerCounter counter, BpfLabel done)
    {
        EmitCountInline(a, counterMap, counter);
        a.Jump(done);
    }

    /// <summary>
    /// The WRITE_HDR_OPT_CB path for one segment kind, with the slot value in r2: look up config (r7), entry (r9) and
    /// scratch (r8), pick the variant by family and prefix length, build M, compute the tag, store the option.
    /// </summary>
    private static void EmitWriteSegment(BpfAssembler a, int configMap, int scratchMap, int counterMap, bool synAck,
        BpfLabel compress, BpfLabel done, BpfLabel error)
    {
        a.Mov64(Reg.R9, Reg.R2);
        EmitLookup(a, configMap, Reg.R7, error);
        EmitEntry(a);
        EmitLookup(a, scratchMap, Reg.R8, error);

        var v6 = a.NewLabel();
        var v4 = a.NewLabel();
        a.Load(BpfSize.W, Reg.R2, Reg.R6, Family);
        a.Jump(JmpOp.Jeq, Reg.R2, AfInet, v4);
        a.Jump(JmpOp.Jne, Reg.R2, AfInet6, error);
        // An AF_INET6 socket on an IPv4 connection (v4-mapped): the tag uses family 4 and 4-byte addresses (§9.2).
        a.Load(BpfSize.W, Reg.R2, Reg.R6, RemoteIp6);
        a.Jump(JmpOp.Jne, Reg.R2, 0, v6);
        a.Load(BpfSize.W, Reg.R2, Reg.R6, RemoteIp6 + 4);
        a.Jump(JmpOp.Jne, Reg.R2, 0, v6);
        a.Load(BpfSize.W, Reg.R2, Reg.R6, RemoteIp6 + 8);
        a.Mov32(Reg.R3, unchecked((int)0xFFFF0000)); // ::ffff: in network order, read as a little-endian word
        a.Jump(JmpOp.Jne, Reg.R2, Reg.R3, v6);

        foreach (bool ipv6 in new[] { false, true })
        {
            a.Mark(ipv6 ? v6 : v4);
            var shortForm = a.NewLabel();
            a.Load(BpfSize.B, Reg.R2, Reg.R9, 8);
            a.Jump(JmpOp.Jeq, Reg.R2, 6, shortForm);
            a.Jump(JmpOp.Jne, Reg.R2, 8, error);
            EmitVariant(a, counterMap, synAck, ipv6, prefixLength: 8, compress, done, error);
            a.Mark(shortForm);
            EmitVariant(a, counterMap, synAck, ipv6, prefixLength: 6, compress, done, error);
        }
    }

    /// <summary>bpf_store_hdr_opt of the option on the stack, its length the prefix's plus the entry's tag length; r0 = result.</summary>
    private static void EmitStoreOption(BpfAssembler a, int prefixLength, BpfLabel error)
    {
        a.Load(BpfSize.B, Reg.R3, Reg.R9, 9);
        a.Alu64(AluOp.Add, Reg.R3, prefixLength);
        a.Jump(JmpOp.Jgt, Reg.R3, 16, error);
        a.Mov64(Reg.R1, Reg.R6);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, Option);
        a.Mov64(Reg.R4, 0);
        a.CallHelper(HelperStoreHdrOpt);
    }

    private static void EmitVariant(BpfAssembler a, int counterMap, bool synAck, bool ipv6, int prefixLength, BpfLabel compress,
        BpfLabel done, BpfLabel error)
    {
        int o = prefixLength, addr = ipv6 ? 16 : 4;
        int length = 36 + o + (2 * addr) + (synAck ? 4 : 0);
        short m = Sha256Layout.Message;

        // The outgoing TCP header (written before the options): ports, seq, ack.
        a.Load(BpfSize.DW, Reg.R2, Reg.R6, SkbData);
        a.Load(BpfSize.DW, Reg.R3, Reg.R6, SkbDataEnd);
        a.Mov64(Reg.R4, Reg.R2);
        a.Alu64(AluOp.Add, Reg.R4, 20);
        a.Jump(JmpOp.Jgt, Reg.R4, Reg.R3, error);

        Sha256Emitter.EmitStoreBytes(a, Reg.R8, m, Label);
        a.StoreImm(BpfSize.B, Reg.R8, (short)(m + 26), synAck ? 2 : 1);
        for (int j = 0; j < o; j++)
        {
            a.Load(BpfSize.B, Reg.R0, Reg.R9, (short)j);
            a.Store(BpfSize.B, Reg.R8, (short)(m + 27 + j), Reg.R0);
        }

        a.StoreImm(BpfSize.B, Reg.R8, (short)(m + 27 + o), ipv6 ? 6 : 4);
        // The client sent the SYN: on a SYN it is this end, on a SYN/ACK the peer.
        short clientAddr = synAck ? (ipv6 ? RemoteIp6 : RemoteIp4) : (ipv6 ? LocalIp6 : LocalIp4);
        short serverAddr = synAck ? (ipv6 ? LocalIp6 : LocalIp4) : (ipv6 ? RemoteIp6 : RemoteIp4);
        for (int w = 0; w < addr / 4; w++)
        {
            a.Load(BpfSize.W, Reg.R0, Reg.R6, (short)(clientAddr + (4 * w)));
            a.Store(BpfSize.W, Reg.R8, (short)(m + 28 + o + (4 * w)), Reg.R0);
            a.Load(BpfSize.W, Reg.R0, Reg.R6, (short)(serverAddr + (4 * w)));
            a.Store(BpfSize.W, Reg.R8, (short)(m + 28 + o + addr + (4 * w)), Reg.R0);
        }

        short ports = (short)(m + 28 + o + (2 * addr));
        a.Load(BpfSize.H, Reg.R0, Reg.R2, synAck ? (short)2 : (short)0);
        a.Store(BpfSize.H, Reg.R8, ports, Reg.R0);
        a.Load(BpfSize.H, Reg.R0, Reg.R2, synAck ? (short)0 : (short)2);
        a.Store(BpfSize.H, Reg.R8, (short)(ports + 2), Reg.R0);
        if (synAck)
        {
            // The SYN's ISN is what this SYN/ACK acknowledges minus one; then the SYN/ACK's own ISN.
            a.Load(BpfSize.W, Reg.R0, Reg.R2, 8);
            a.ToBigEndian(Reg.R0, 32);
            a.Alu32(AluOp.Sub, Reg.R0, 1);
            a.ToBigEndian(Reg.R0, 32);
            a.Store(BpfSize.W, Reg.R8, (short)(ports + 4), Reg.R0);
            a.Load(BpfSize.W, Reg.R0, Reg.R2, 4);
            a.Store(BpfSize.W, Reg.R8, (short)(ports + 8), Reg.R0);
        }
        else
        {
            a.Load(BpfSize.W, Reg.R0, Reg.R2, 4);
            a.Store(BpfSize.W, Reg.R8, (short)(ports + 4), Reg.R0);
        }

        Sha256Emitter.EmitHmac(a, compress, Reg.R8, Reg.R7, 0, length);

        // The option: prefix, then the tag's first bytes (the stack wants aligned stores: halves for the short form).
        a.StoreImm(BpfSize.DW, Reg.R10, Option, 0);
        a.StoreImm(BpfSize.DW, Reg.R10, Option + 8, 0);
        a.Load(BpfSize.DW, Reg.R0, Reg.R9, 0);
        a.Store(BpfSize.DW, Reg.R10, Option, Reg.R0);
        a.Load(BpfSize.W, Reg.R0, Reg.R8, Sha256Layout.State);
        a.ToBigEndian(Reg.R0, 32);
        a.Load(BpfSize.W, Reg.R1, Reg.R8, Sha256Layout.State + 4);
        a.ToBigEndian(Reg.R1, 32);
        if (o == 8)
        {
            a.Store(BpfSize.W, Reg.R10, Option + 8, Reg.R0);
            a.Store(BpfSize.W, Reg.R10, Option + 12, Reg.R1);
        }
        else
        {
            a.Store(BpfSize.H, Reg.R10, Option + 6, Reg.R0);
            a.Alu32(AluOp.Rsh, Reg.R0, 16);
            a.Store(BpfSize.H, Reg.R10, Option + 8, Reg.R0);
            a.Store(BpfSize.H, Reg.R10, Option + 10, Reg.R1);
            a.Alu32(AluOp.Rsh, Reg.R1, 16);
            a.Store(BpfSize.H, Reg.R10, Option + 12, Reg.R1);
        }

        EmitStoreOption(a, o, error);
        var stored = a.NewLabel();
        a.Jump(JmpOp.Jeq, Reg.R0, 0, stored);
        // -EEXIST: an MPTCP segment (MP_CAPABLE is kind 30 too). With relabelling on, store the placeholder kind that
        // the egress program turns back into 30; the tag was computed over kind 30 all along.
        a.Jump(JmpOp.Jne, Reg.R0, -17, error);
        a.Load(BpfSize.B, Reg.R2, Reg.R9, 10);
        a.Jump(JmpOp.Jeq, Reg.R2, 0, error);
        a.StoreImm(BpfSize.B, Reg.R10, Option, EgressRelabelProgram.PlaceholderKind);
        EmitStoreOption(a, o, error);
        a.Jump(JmpOp.Jne, Reg.R0, 0, error);
        EmitCountInline(a, counterMap, SignerCounter.Placeholder);
        a.Mark(stored);
        EmitCount(a, counterMap, synAck ? SignerCounter.SynAckSigned : SignerCounter.SynSigned, done);
    }
}
