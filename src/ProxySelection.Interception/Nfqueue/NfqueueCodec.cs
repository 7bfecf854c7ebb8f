using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ProxySelection.Interception.Netlink;

namespace ProxySelection.Interception.Nfqueue;

/// <summary>
/// Encodes NFQUEUE requests (config, verdicts) and decodes the kernel's packet and error messages. Pure code:
/// no sockets, no allocation. Decoders return a <see cref="NetlinkStatus"/>; they never throw on bad input.
/// </summary>
public static class NfqueueCodec
{
    /// <summary>Upper bound of a request without payload (header + nfgenmsg + three small attributes).</summary>
    public const int SmallRequestLength = 64;

    /// <summary>Bytes a verdict with a replacement payload of <paramref name="payloadLength"/> bytes needs.</summary>
    public static int VerdictLength(int payloadLength) =>
        SmallRequestLength + Netlink.Netlink.Align(Netlink.Netlink.AttributeHeaderLength + payloadLength);

    /// <summary>NFQNL_MSG_CONFIG with NFQA_CFG_CMD (bind/unbind a queue). <paramref name="protocolFamily"/> is ignored by
    /// kernels since 3.8 but kept in the struct.</summary>
    public static void WriteConfigCommand(ref NetlinkWriter w, uint sequence, ushort queue, NfqueueCommand command,
        ushort protocolFamily = 0, bool ack = true)
    {
        Begin(ref w, Nfq.MsgConfig, sequence, queue, ack);
        Span<byte> cmd = [(byte)command, 0, 0, 0];
        BinaryPrimitives.WriteUInt16BigEndian(cmd[2..], protocolFamily);
        w.AddAttribute(Nfq.CfgCmd, cmd);
        w.EndMessage();
    }

    /// <summary>NFQNL_MSG_CONFIG with NFQA_CFG_PARAMS (copy mode and range).</summary>
    public static void WriteConfigParams(ref NetlinkWriter w, uint sequence, ushort queue, NfqueueCopyMode mode, uint copyRange, bool ack = true)
    {
        Begin(ref w, Nfq.MsgConfig, sequence, queue, ack);
        Span<byte> p = stackalloc byte[Nfq.ConfigParamsLength];
        BinaryPrimitives.WriteUInt32BigEndian(p, copyRange);
        p[4] = (byte)mode;
        w.AddAttribute(Nfq.CfgParams, p);
        w.EndMessage();
    }

    /// <summary>NFQNL_MSG_CONFIG with NFQA_CFG_QUEUE_MAXLEN.</summary>
    public static void WriteConfigMaxLength(ref NetlinkWriter w, uint sequence, ushort queue, uint maxLength, bool ack = true)
    {
        Begin(ref w, Nfq.MsgConfig, sequence, queue, ack);
        w.AddAttributeUInt32BigEndian(Nfq.CfgQueueMaxLen, maxLength);
        w.EndMessage();
    }

    /// <summary>NFQNL_MSG_CONFIG with NFQA_CFG_FLAGS and NFQA_CFG_MASK: sets the flags under the mask.</summary>
    public static void WriteConfigFlags(ref NetlinkWriter w, uint sequence, ushort queue, NfqueueConfigFlags flags,
        NfqueueConfigFlags mask, bool ack = true)
    {
        Begin(ref w, Nfq.MsgConfig, sequence, queue, ack);
        w.AddAttributeUInt32BigEndian(Nfq.CfgFlags, (uint)flags);
        w.AddAttributeUInt32BigEndian(Nfq.CfgMask, (uint)mask);
        w.EndMessage();
    }

    /// <summary>
    /// NFQNL_MSG_VERDICT for one packet, optionally with a new mark (replaces skb->mark whole) and a replacement
    /// payload (the whole network-layer packet; the kernel does not fix checksums).
    /// </summary>
    public static void WriteVerdict(ref NetlinkWriter w, uint sequence, ushort queue, uint packetId, NfqueueVerdict verdict,
        uint? mark = null, ReadOnlySpan<byte> payload = default, bool replacePayload = false)
    {
        Begin(ref w, Nfq.MsgVerdict, sequence, queue, ack: false);
        WriteVerdictBody(ref w, packetId, verdict, mark);
        if (replacePayload)
        {
            w.AddAttribute(Nfq.AttrPayload, payload);
        }

        w.EndMessage();
    }

    /// <summary>NFQNL_MSG_VERDICT_BATCH: one verdict (and mark) for every queued packet with id up to <paramref name="lastPacketId"/>.</summary>
    public static void WriteBatchVerdict(ref NetlinkWriter w, uint sequence, ushort queue, uint lastPacketId, NfqueueVerdict verdict, uint? mark = null)
    {
        Begin(ref w, Nfq.MsgVerdictBatch, sequence, queue, ack: false);
        WriteVerdictBody(ref w, lastPacketId, verdict, mark);
        w.EndMessage();
    }

    /// <summary>Decodes NFQNL_MSG_PACKET. Requires NFQA_PACKET_HDR; every fixed-size attribute must have its size.</summary>
    public static NetlinkStatus TryReadPacket(in NetlinkMessage message, out NfqueuePacket packet)
    {
        packet = default;
        if (message.Type != Nfq.MsgPacket)
        {
            return NetlinkStatus.UnexpectedType;
        }

        var body = message.Payload;
        if (body.Length < Nfq.NfgenHeaderLength)
        {
            return NetlinkStatus.Truncated;
        }

        byte family = body[0];
        ushort queue = BinaryPrimitives.ReadUInt16BigEndian(body[2..]);
        bool haveHeader = false;
        uint id = 0, mark = 0, inDev = 0, outDev = 0, skbInfo = 0;
        ushort hwProtocol = 0;
        byte hook = 0;
        int? capLen = null;
        uint? ctInfo = null;
        long timestamp = 0;
        ReadOnlySpan<byte> payload = default, ct = default;

        var attrs = new NetlinkAttributeReader(body[Nfq.NfgenHeaderLength..]);
        while (attrs.TryReadNext(out var a))
        {
            var v = a.Payload;
            uint value = 0;
            // Fixed-size attributes: a wrong size makes the whole message malformed.
            var wellFormed = a.Type switch
            {
                Nfq.AttrPacketHeader => v.Length >= Nfq.PacketHeaderLength,
                Nfq.AttrMark or Nfq.AttrIfIndexInDev or Nfq.AttrIfIndexOutDev or Nfq.AttrSkbInfo or Nfq.AttrConntrackInfo => TryU32(v, out value),
                Nfq.AttrCapLen => TryU32(v, out value) && value <= int.MaxValue,
                // struct nfqnl_msg_packet_timestamp: be64 sec, be64 usec.
                Nfq.AttrTimestamp => v.Length >= 16,
                _ => true,
            };
            if (!wellFormed)
            {
                return NetlinkStatus.BadAttributePayload;
            }

            switch (a.Type)
            {
                case Nfq.AttrPacketHeader:
                    id = BinaryPrimitives.ReadUInt32BigEndian(v);
                    hwProtocol = BinaryPrimitives.ReadUInt16BigEndian(v[4..]);
                    hook = v[6];
                    haveHeader = true;
                    break;
                case Nfq.AttrMark:
                    mark = value;
                    break;
                case Nfq.AttrIfIndexInDev:
                    inDev = value;
                    break;
                case Nfq.AttrIfIndexOutDev:
                    outDev = value;
                    break;
                case Nfq.AttrPayload:
                    payload = v;
                    break;
                case Nfq.AttrCapLen:
                    capLen = (int)value;
                    break;
                case Nfq.AttrSkbInfo:
                    skbInfo = value;
                    break;
                case Nfq.AttrConntrack:
                    ct = v;
                    break;
                case Nfq.AttrConntrackInfo:
                    ctInfo = value;
                    break;
                case Nfq.AttrTimestamp:
                    timestamp = unchecked((long)BinaryPrimitives.ReadUInt64BigEndian(v) * 1_000_000 + (long)BinaryPrimitives.ReadUInt64BigEndian(v[8..]));
                    break;
                default:
                    // Hardware address, uid/gid, security context, VLAN, L2 header: not used here.
                    break;
            }
        }

        if (attrs.Status != NetlinkStatus.Ok)
        {
            return attrs.Status;
        }

        if (!haveHeader)
        {
            return NetlinkStatus.MissingPacketHeader;
        }

        packet = new NfqueuePacket
        {
            Family = family,
            QueueNumber = queue,
            PacketId = id,
            HardwareProtocol = hwProtocol,
            Hook = (NetfilterHook)hook,
            Mark = mark,
            InDeviceIndex = inDev,
            OutDeviceIndex = outDev,
            Payload = payload,
            OriginalLength = capLen ?? payload.Length,
            SkbInfo = (NfqueueSkbInfo)skbInfo,
            Conntrack = ct,
            ConntrackInfo = ctInfo,
            TimestampMicroseconds = timestamp,
        };
        return NetlinkStatus.Ok;
    }

    /// <summary>
    /// Decodes NLMSG_ERROR: <paramref name="error"/> is 0 for an ACK, else a negative errno; <paramref name="requestSequence"/>
    /// is the sequence number of the request it answers.
    /// </summary>
    public static NetlinkStatus TryReadError(in NetlinkMessage message, out int error, out uint requestSequence)
    {
        error = 0;
        requestSequence = 0;
        if (message.Type != Netlink.Netlink.TypeError)
        {
            return NetlinkStatus.UnexpectedType;
        }

        // struct nlmsgerr: int error; struct nlmsghdr msg (the request's header, payload possibly capped).
        if (message.Payload.Length < 4 + Netlink.Netlink.HeaderLength)
        {
            return NetlinkStatus.Truncated;
        }

        error = MemoryMarshal.Read<int>(message.Payload);
        requestSequence = MemoryMarshal.Read<uint>(message.Payload[(4 + 8)..]);
        return NetlinkStatus.Ok;
    }

    private static void Begin(ref NetlinkWriter w, ushort type, uint sequence, ushort queue, bool ack)
    {
        w.BeginMessage(type, (ushort)(Netlink.Netlink.FlagRequest | (ack ? Netlink.Netlink.FlagAck : 0)), sequence);
        w.WriteNfgenHeader(0 /* AF_UNSPEC */, queue);
    }

    private static void WriteVerdictBody(ref NetlinkWriter w, uint packetId, NfqueueVerdict verdict, uint? mark)
    {
        Span<byte> vh = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(vh, (uint)verdict);
        BinaryPrimitives.WriteUInt32BigEndian(vh[4..], packetId);
        w.AddAttribute(Nfq.AttrVerdictHeader, vh);
        if (mark is { } m)
        {
            w.AddAttributeUInt32BigEndian(Nfq.AttrMark, m);
        }
    }

    private static bool TryU32(ReadOnlySpan<byte> v, out uint value)
    {
        if (v.Length != 4)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt32BigEndian(v);
        return true;
    }
}
