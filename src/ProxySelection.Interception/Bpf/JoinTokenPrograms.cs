namespace ProxySelection.Interception.Bpf;

/// <summary>
/// Finds a 12-byte MPTCP option (kind 30) in a TCP header with bpf_skb_load_bytes, one option at a time: no packet
/// pointers (valid after a helper that rewrote the packet, and in socket filters, which have none). The first kind-30
/// option of length 12 decides: its subtype must be the one asked for. An option that cannot be whole inside both the
/// header and the packet ends the search (a 12-byte option cannot start there), and so do EOL, a length below 2, and
/// more than <see cref="MaxOptions"/> options.
/// </summary>
internal static class TcpOptionScan
{
    public const int MaxOptions = 12; // a SYN or SYN/ACK has at most 7 before MPTCP's (MSS, NOP, NOP, TS, NOP, WS)
    public const short Option = -16;  // the option's 12 bytes: fp-16..fp-5
    private const int HelperLoadBytes = 26;

    /// <summary>
    /// r6 = the skb; <paramref name="tcp"/> = the TCP header's offset from skb->data, <paramref name="headerLength"/> =
    /// its length in bytes, both callee-saved; <paramref name="cursor"/> (callee-saved) is overwritten. At
    /// <paramref name="found"/> the option is on the stack at <see cref="Option"/>. Clobbers r0-r5.
    /// </summary>
    public static void EmitFind(BpfAssembler a, Reg tcp, Reg headerLength, Reg cursor, int subtype, BpfLabel found, BpfLabel notFound)
    {
        a.Mov64(cursor, 20);
        for (int i = 0; i < MaxOptions; i++)
        {
            var skip = a.NewLabel();
            var next = a.NewLabel();
            a.Mov64(Reg.R1, cursor);
            a.Alu64(AluOp.Add, Reg.R1, 12);
            a.Jump(JmpOp.Jgt, Reg.R1, headerLength, notFound);
            a.Mov64(Reg.R2, tcp);
            a.Alu64(AluOp.Add, Reg.R2, cursor);
            EmitLoadBytes(a, Option, 12, notFound);
            a.Load(BpfSize.B, Reg.R1, Reg.R10, Option);
            a.Jump(JmpOp.Jeq, Reg.R1, 0, notFound);
            var notNop = a.NewLabel();
            a.Jump(JmpOp.Jne, Reg.R1, 1, notNop);
            a.Alu64(AluOp.Add, cursor, 1);
            a.Jump(next);
            a.Mark(notNop);
            a.Load(BpfSize.B, Reg.R2, Reg.R10, Option + 1);
            a.Jump(JmpOp.Jlt, Reg.R2, 2, notFound);
            a.Jump(JmpOp.Jne, Reg.R1, 30, skip);
            a.Jump(JmpOp.Jne, Reg.R2, 12, skip);
            a.Load(BpfSize.B, Reg.R3, Reg.R10, Option + 2);
            a.Alu64(AluOp.And, Reg.R3, 0xF0);
            a.Jump(JmpOp.Jeq, Reg.R3, subtype << 4, found);
            a.Jump(notFound);
            a.Mark(skip);
            a.Alu64(AluOp.Add, cursor, Reg.R2);
            a.Mark(next);
        }

        a.Jump(notFound);
    }

    /// <summary>bpf_skb_load_bytes(skb = r6, offset = r2, fp + <paramref name="stack"/>, <paramref name="length"/>); a
    /// packet too short jumps to <paramref name="fail"/>. Clobbers r0-r5.</summary>
    public static void EmitLoadBytes(BpfAssembler a, short stack, int length, BpfLabel fail)
    {
        a.Mov64(Reg.R1, Reg.R6);
        a.Mov64(Reg.R3, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R3, stack);
        a.Mov64(Reg.R4, length);
        a.CallHelper(HelperLoadBytes);
        a.Jump(JmpOp.Jne, Reg.R0, 0, fail);
    }
}

/// <summary>
/// The raw table's matches (xt_bpf, <c>-m bpf --object-pinned</c>; socket filters, so skb->data is the IP header) for
/// MP_JOIN SYNs. <see cref="Emit"/> matches a join whose token is one of this proxy's: its listener sent that key in an
/// MP_CAPABLE SYN/ACK (<see cref="TokenLearning"/>), or the engine stored it again before it vouched for the map; it returns 1 and counts
/// <see cref="SignerCounter.JoinsTaken"/>. <see cref="EmitForeign"/> matches a join whose token is not, while the map is
/// whole (<see cref="JoinMapState"/>): the join belongs to a connection this proxy passed, and goes on in the kernel; it
/// counts <see cref="SignerCounter.JoinsPassed"/>. Both return 0 for anything else. IPv4 and IPv6 (no extension
/// headers); the rule around them has already matched TCP, SYN and the ports.
/// </summary>
internal static class JoinMatchProgram
{
    private const int HelperLookup = 1;
    private const short Byte = -24, StateKey = -28;

    public static byte[] Emit(int tokenMap, int counterMap) => EmitMatch(counterMap, SignerCounter.JoinsTaken, (a, no) =>
    {
        EmitLookupToken(a, tokenMap);
        a.Jump(JmpOp.Jeq, Reg.R0, 0, no);
    });

    /// <summary>
    /// The foreign join: a well-formed MP_JOIN SYN whose token the map does not hold, while every learning attempt has
    /// been acknowledged (<see cref="JoinMapState.Failures"/> equals <see cref="JoinMapState.Acknowledged"/>): a token
    /// the egress program could not store (map full), or a map the daemon has not vouched for, sends joins to the queue.
    /// </summary>
    public static byte[] EmitForeign(int tokenMap, int stateMap, int counterMap) => EmitMatch(counterMap, SignerCounter.JoinsPassed, (a, no) =>
    {
        EmitLookupState(a, stateMap, JoinMapState.Failures, no);
        a.Load(BpfSize.DW, Reg.R7, Reg.R0, 0);
        EmitLookupState(a, stateMap, JoinMapState.Acknowledged, no);
        a.Load(BpfSize.DW, Reg.R1, Reg.R0, 0);
        a.Jump(JmpOp.Jne, Reg.R1, Reg.R7, no);
        EmitLookupToken(a, tokenMap);
        a.Jump(JmpOp.Jne, Reg.R0, 0, no);
    });

    /// <summary>A match on a join (<see cref="EmitFindJoin"/>): <paramref name="decide"/> jumps to its label for "no", else
    /// the program counts <paramref name="counter"/> and returns 1.</summary>
    private static byte[] EmitMatch(int counterMap, SignerCounter counter, Action<BpfAssembler, BpfLabel> decide)
    {
        var a = new BpfAssembler();
        var no = a.NewLabel();
        var found = a.NewLabel();
        EmitFindJoin(a, found, no);

        a.Mark(found);
        decide(a, no);
        SigningProgram.EmitCountInline(a, counterMap, counter);
        a.Mov64(Reg.R0, 1);
        a.Exit();

        a.Mark(no);
        a.Mov64(Reg.R0, 0);
        a.Exit();
        return a.Build();
    }

    /// <summary>r0 = the state map's <paramref name="slot"/>, or a jump to <paramref name="fail"/>. Clobbers r1-r5.</summary>
    internal static void EmitLookupState(BpfAssembler a, int stateMap, int slot, BpfLabel fail, short keyOffset = StateKey)
    {
        a.StoreImm(BpfSize.W, Reg.R10, keyOffset, slot);
        a.LoadMapFd(Reg.R1, stateMap);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, keyOffset);
        a.CallHelper(HelperLookup);
        a.Jump(JmpOp.Jeq, Reg.R0, 0, fail);
    }

    /// <summary>r0 = the token map's value for the join's token (found by <see cref="EmitFindJoin"/>), or 0.</summary>
    private static void EmitLookupToken(BpfAssembler a, int tokenMap)
    {
        // MP_JOIN's SYN form: kind, length, subtype|B, address id, the receiver's token (4), nonce (4).
        a.LoadMapFd(Reg.R1, tokenMap);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, TcpOptionScan.Option + 4);
        a.CallHelper(HelperLookup);
    }

    /// <summary>A SYN (not a SYN/ACK) with a 12-byte MP_JOIN: at <paramref name="found"/> the option is on the stack at
    /// <see cref="TcpOptionScan.Option"/>. Uses r6-r9.</summary>
    private static void EmitFindJoin(BpfAssembler a, BpfLabel found, BpfLabel no)
    {
        var v6 = a.NewLabel();
        var tcp = a.NewLabel();
        a.Mov64(Reg.R6, Reg.R1);
        LoadByte(a, 0, no);
        a.Mov64(Reg.R7, Reg.R0);
        a.Alu64(AluOp.Rsh, Reg.R0, 4);
        a.Jump(JmpOp.Jeq, Reg.R0, 6, v6);
        a.Jump(JmpOp.Jne, Reg.R0, 4, no);
        a.Alu64(AluOp.And, Reg.R7, 0xF);
        a.Alu64(AluOp.Lsh, Reg.R7, 2);
        a.Jump(JmpOp.Jlt, Reg.R7, 20, no);
        LoadByte(a, 9, no);
        a.Jump(JmpOp.Jne, Reg.R0, 6, no);
        a.Jump(tcp);

        a.Mark(v6);
        LoadByte(a, 6, no);
        a.Jump(JmpOp.Jne, Reg.R0, 6, no);
        a.Mov64(Reg.R7, 40);

        a.Mark(tcp);
        a.Mov64(Reg.R2, Reg.R7);
        a.Alu64(AluOp.Add, Reg.R2, 13);
        LoadByte(a, Reg.R2, no);
        a.Alu64(AluOp.And, Reg.R0, 0x12);
        a.Jump(JmpOp.Jne, Reg.R0, 0x02, no); // a SYN, not a SYN/ACK
        a.Mov64(Reg.R2, Reg.R7);
        a.Alu64(AluOp.Add, Reg.R2, 12);
        LoadByte(a, Reg.R2, no);
        a.Mov64(Reg.R8, Reg.R0);
        a.Alu64(AluOp.Rsh, Reg.R8, 4);
        a.Alu64(AluOp.Lsh, Reg.R8, 2);
        TcpOptionScan.EmitFind(a, Reg.R7, Reg.R8, Reg.R9, subtype: 1, found, no);
    }

    private static void LoadByte(BpfAssembler a, int offset, BpfLabel fail)
    {
        a.Mov64(Reg.R2, offset);
        LoadByte(a, Reg.R2, fail);
    }

    /// <summary>r0 = the byte at offset r2 from skb->data (r6), or a jump to <paramref name="fail"/>.</summary>
    private static void LoadByte(BpfAssembler a, Reg offset, BpfLabel fail)
    {
        if (offset != Reg.R2)
        {
            a.Mov64(Reg.R2, offset);
        }

        TcpOptionScan.EmitLoadBytes(a, Byte, 1, fail);
        a.Load(BpfSize.B, Reg.R0, Reg.R10, Byte);
    }
}

/// <summary>
/// The egress program's learning of this proxy's tokens: on the listener's own SYN/ACK (its mark), the MP_CAPABLE
/// option's key gives the token, the most significant 32 bits of SHA-256(key) (RFC 8684 §3.2), which goes into the
/// token map (key: the token's 4 bytes as they appear in MP_JOIN; value: when, bpf_ktime_get_ns) for
/// <see cref="JoinMatchProgram"/>. A token the map refuses (full) counts in <see cref="JoinMapState.Failures"/> and
/// stamps <see cref="JoinMapState.LastFailure"/>: foreign joins then cross the queue until the daemon vouches for the map.
/// </summary>
internal static class TokenLearning
{
    private const int HelperUpdate = 2, HelperKtimeGetNs = 5;
    private const short TokenKey = -28, TokenValue = -40, StateKey = -44;

    /// <summary>
    /// r6 = the skb, <paramref name="tcp"/> and <paramref name="headerLength"/> as for <see cref="TcpOptionScan.EmitFind"/>
    /// (the segment is a SYN with the listener's mark); ends at <paramref name="done"/>. Uses r8 and r9 (callee-saved).
    /// </summary>
    public static void Emit(BpfAssembler a, int tokenMap, int scratchMap, int stateMap, int counterMap, BpfLabel compress, Reg tcp,
        Reg headerLength, BpfLabel done)
    {
        var found = a.NewLabel();
        var failed = a.NewLabel();
        // Only a SYN/ACK: the ACK bit (the caller checked SYN).
        a.Mov64(Reg.R2, tcp);
        a.Alu64(AluOp.Add, Reg.R2, 13);
        TcpOptionScan.EmitLoadBytes(a, TcpOptionScan.Option, 1, done);
        a.Load(BpfSize.B, Reg.R1, Reg.R10, TcpOptionScan.Option);
        a.Alu64(AluOp.And, Reg.R1, 0x10);
        a.Jump(JmpOp.Jeq, Reg.R1, 0, done);
        TcpOptionScan.EmitFind(a, tcp, headerLength, Reg.R9, subtype: 0, found, done);

        a.Mark(found);
        SigningProgram.EmitLookup(a, scratchMap, Reg.R8, done);
        // One SHA-256 block: the key (option bytes 4..11), 0x80, zeros, the bit length 64 (big endian).
        a.Load(BpfSize.W, Reg.R0, Reg.R10, TcpOptionScan.Option + 4);
        a.Store(BpfSize.W, Reg.R8, Sha256Layout.Message, Reg.R0);
        a.Load(BpfSize.W, Reg.R0, Reg.R10, TcpOptionScan.Option + 8);
        a.Store(BpfSize.W, Reg.R8, Sha256Layout.Message + 4, Reg.R0);
        Sha256Emitter.EmitStoreBytes(a, Reg.R8, Sha256Layout.Message + 8, Padding);
        uint[] initial = Sha256Block.InitialState();
        for (int k = 0; k < 8; k++)
        {
            a.StoreImm(BpfSize.W, Reg.R8, (short)(Sha256Layout.State + (k * 4)), unchecked((int)initial[k]));
        }

        a.Mov64(Reg.R1, Reg.R8);
        a.Mov64(Reg.R2, Reg.R8);
        a.Alu64(AluOp.Add, Reg.R2, Sha256Layout.Message);
        a.Call(compress);
        a.Load(BpfSize.W, Reg.R0, Reg.R8, Sha256Layout.State);
        a.ToBigEndian(Reg.R0, 32);
        a.Store(BpfSize.W, Reg.R10, TokenKey, Reg.R0);
        a.CallHelper(HelperKtimeGetNs);
        a.Store(BpfSize.DW, Reg.R10, TokenValue, Reg.R0);
        a.LoadMapFd(Reg.R1, tokenMap);
        a.Mov64(Reg.R2, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R2, TokenKey);
        a.Mov64(Reg.R3, Reg.R10);
        a.Alu64(AluOp.Add, Reg.R3, TokenValue);
        a.Mov64(Reg.R4, 0);
        a.CallHelper(HelperUpdate);
        a.Jump(JmpOp.Jne, Reg.R0, 0, failed);
        SigningProgram.EmitCountInline(a, counterMap, SignerCounter.TokensLearnt);
        a.Jump(done);

        // Not stored: the stamp first, then the count the foreign match compares (a count that moved has its stamp).
        a.Mark(failed);
        JoinMatchProgram.EmitLookupState(a, stateMap, JoinMapState.LastFailure, done, StateKey);
        a.Load(BpfSize.DW, Reg.R1, Reg.R10, TokenValue);
        a.Store(BpfSize.DW, Reg.R0, 0, Reg.R1);
        JoinMatchProgram.EmitLookupState(a, stateMap, JoinMapState.Failures, done, StateKey);
        a.Load(BpfSize.DW, Reg.R1, Reg.R0, 0);
        a.Alu64(AluOp.Add, Reg.R1, 1);
        a.Store(BpfSize.DW, Reg.R0, 0, Reg.R1);
        a.Jump(done);
    }

    private static readonly byte[] Padding = BuildPadding();

    private static byte[] BuildPadding()
    {
        var padding = new byte[56];
        padding[0] = 0x80;
        padding[55] = 64; // the message's length in bits, the block's last byte
        return padding;
    }
}

/// <summary>
/// The join map's state (an array of three u64): whether the token map holds every token this proxy handed out, so that
/// a token it lacks is another connection's (<see cref="JoinMatchProgram.EmitForeign"/>).
/// </summary>
internal static class JoinMapState
{
    /// <summary>Tokens the egress program could not store (the map was full), counted by it.</summary>
    public const int Failures = 0;

    /// <summary>The failures the daemon has vouched for (it stored the tokens since, or their handshakes are long over);
    /// <see cref="Blocked"/> while it cannot vouch for the map at all.</summary>
    public const int Acknowledged = 1;

    /// <summary>bpf_ktime_get_ns of the last failure.</summary>
    public const int LastFailure = 2;

    public const int Slots = 3;

    /// <summary>An acknowledgement no count reaches.</summary>
    public const ulong Blocked = ulong.MaxValue;
}

/// <summary>
/// The raw table's gate (xt_bpf, a socket filter) in front of the rule that queues RSTs toward the intercepted ports:
/// the engine reads a RST only to end the hold of a SYN from the same flow (spec §7.2), so RSTs need the queue only
/// while a SYN is held. Matches (returns 1) while the gate map's one value is non-zero, or when the map cannot be read
/// (fail toward the queue, as before); else 0. MPTCP closes many subflows with a RST: without the gate each crossed the
/// queue.
/// </summary>
internal static class RstGateProgram
{
    public static byte[] Emit(int gateMap)
    {
        var a = new BpfAssembler();
        var open = a.NewLabel();
        SigningProgram.EmitLookup(a, gateMap, Reg.R6, open);
        a.Load(BpfSize.DW, Reg.R1, Reg.R6, 0);
        a.Jump(JmpOp.Jne, Reg.R1, 0, open);
        a.Mov64(Reg.R0, 0);
        a.Exit();
        a.Mark(open);
        a.Mov64(Reg.R0, 1);
        a.Exit();
        return a.Build();
    }
}
