using System.Buffers.Binary;
using ProxySelection.Interception.Netlink;
using ProxySelection.Interception.Nfqueue;
using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Interception.Tests.Nfqueue;

/// <summary>Pure tests of the netlink / NFQUEUE codec (no kernel). Layouts from linux/netfilter/nfnetlink_queue.h.</summary>
[TestFixture]
public sealed class NfqueueCodecTests
{
    [Test]
    public void WriteConfigCommand_Bind_ProducesKernelLayout()
    {
        var buffer = new byte[64];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteConfigCommand(ref w, sequence: 7, queue: 5, NfqueueCommand.Bind);

        byte[] expected =
        [
            .. Host32(28), .. Host16(0x0302), .. Host16(0x0005), .. Host32(7), .. Host32(0),
            0, 0, 0x00, 0x05, // nfgenmsg: AF_UNSPEC, version 0, res_id = queue (big-endian)
            .. Host16(8), .. Host16(1), 1, 0, 0x00, 0x00, // NFQA_CFG_CMD: command BIND, pad, pf 0
        ];
        Assert.That(buffer[..w.Length], Is.EqualTo(expected));
    }

    [Test]
    public void WriteConfigParams_PacketMode_RangeBigEndianAndAttributePadded()
    {
        var buffer = new byte[64];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteConfigParams(ref w, 1, 0x0102, NfqueueCopyMode.Packet, 0xFFFF);

        Assert.That(w.Length, Is.EqualTo(16 + 4 + 12));
        Assert.That(buffer[16..20], Is.EqualTo(new byte[] { 0, 0, 0x01, 0x02 }));
        // nla_len 9 (4 + packed 5-byte struct), type 2, copy_range big-endian, copy_mode, 3 zero pad bytes.
        Assert.That(buffer[20..32], Is.EqualTo((byte[])[.. Host16(9), .. Host16(2), 0, 0, 0xFF, 0xFF, 2, 0, 0, 0]));
    }

    [Test]
    public void WriteConfigFlags_FailOpenAndGso_FlagsThenMaskBigEndian()
    {
        var buffer = new byte[64];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteConfigFlags(ref w, 1, 0, NfqueueConfigFlags.FailOpen | NfqueueConfigFlags.Gso,
            NfqueueConfigFlags.FailOpen | NfqueueConfigFlags.Gso | NfqueueConfigFlags.Conntrack);

        Assert.That(buffer[20..36], Is.EqualTo((byte[])[.. Host16(8), .. Host16(5), 0, 0, 0, 5, .. Host16(8), .. Host16(4), 0, 0, 0, 7]));
    }

    [Test]
    public void WriteConfigMaxLength_Value_BigEndianAttribute()
    {
        var buffer = new byte[64];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteConfigMaxLength(ref w, 1, 0, 1024);

        Assert.That(buffer[20..28], Is.EqualTo((byte[])[.. Host16(8), .. Host16(3), 0, 0, 4, 0]));
    }

    [Test]
    public void WriteVerdict_RequestsCarryNoAckFlag_ConfigRequestsDo()
    {
        var buffer = new byte[128];
        var w = new NetlinkWriter(buffer);
        NfqueueCodec.WriteVerdict(ref w, 1, 0, 9, NfqueueVerdict.Accept);
        NfqueueCodec.WriteConfigCommand(ref w, 2, 0, NfqueueCommand.Unbind);

        var r = new NetlinkMessageReader(buffer.AsSpan(0, w.Length));
        Assert.That(r.TryReadNext(out var verdict), Is.True);
        var verdictFlags = verdict.Flags;
        Assert.That(r.TryReadNext(out var config), Is.True);
        var configFlags = config.Flags;

        Assert.That(verdictFlags, Is.EqualTo((ushort)1));
        Assert.That(configFlags, Is.EqualTo((ushort)5));
    }

    [Test]
    public void WriteVerdict_AcceptWithMarkAndPayload_DecodesBack()
    {
        var payload = new byte[] { 0x45, 0, 0, 21, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 };
        var buffer = new byte[NfqueueCodec.VerdictLength(payload.Length)];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteVerdict(ref w, 3, 4, 0xDEADBEEF, NfqueueVerdict.Accept, 0x11, payload, replacePayload: true);

        var decoded = DecodeVerdict(buffer.AsSpan(0, w.Length));
        Assert.That(decoded.Type, Is.EqualTo((ushort)0x0301));
        Assert.That(decoded.Queue, Is.EqualTo((ushort)4));
        Assert.That(decoded.Verdict, Is.EqualTo(1u));
        Assert.That(decoded.Id, Is.EqualTo(0xDEADBEEF));
        Assert.That(decoded.Mark, Is.EqualTo(0x11u));
        Assert.That(decoded.Payload, Is.EqualTo(payload));
        Assert.That(w.Length % 4, Is.Zero);
    }

    [Test]
    public void WriteBatchVerdict_Drop_IsVerdictBatchMessageWithoutPayload()
    {
        var buffer = new byte[64];
        var w = new NetlinkWriter(buffer);

        NfqueueCodec.WriteBatchVerdict(ref w, 3, 4, 77, NfqueueVerdict.Drop);

        var decoded = DecodeVerdict(buffer.AsSpan(0, w.Length));
        Assert.That(decoded.Type, Is.EqualTo((ushort)0x0303));
        Assert.That(decoded.Verdict, Is.Zero);
        Assert.That(decoded.Id, Is.EqualTo(77u));
        Assert.That(decoded.Mark, Is.Null);
        Assert.That(decoded.Payload, Is.Null);
    }

    [Test]
    public void TryReadPacket_EveryAttribute_DecodesEachField()
    {
        byte[] ip = [0x45, 0, 0, 43, 9, 9, 9];
        var message = BuildPacket(family: 10, queue: 5, a =>
        {
            a.Add((1, [0, 0, 0, 42, 0x86, 0xDD, 4]));            // NFQA_PACKET_HDR: id 42, hw 0x86DD, hook POST_ROUTING
            a.Add((3, [0, 0, 0, 0x11]));                         // NFQA_MARK
            a.Add((5, [0, 0, 0, 3]));                            // NFQA_IFINDEX_INDEV
            a.Add((6, [0, 0, 0, 4]));                            // NFQA_IFINDEX_OUTDEV
            a.Add((10, ip));                                     // NFQA_PAYLOAD (odd length: padded)
            a.Add((0x8000 | 11, [.. Host16(8), .. Host16(12), 0, 0, 0, 1])); // NFQA_CT nested (CTA_ID)
            a.Add((12, [0, 0, 0, 2]));                           // NFQA_CT_INFO
            a.Add((13, [0, 0, 5, 0xDC]));                        // NFQA_CAP_LEN 1500
            a.Add((14, [0, 0, 0, 1]));                           // NFQA_SKB_INFO: checksum not ready
            a.Add((99, [1, 2, 3]));                              // unknown: ignored
        });
        var reader = new NetlinkMessageReader(message);
        Assert.That(reader.TryReadNext(out var m), Is.True);

        var status = NfqueueCodec.TryReadPacket(m, out var p);

        Assert.That(status, Is.EqualTo(NetlinkStatus.Ok));
        Assert.That(p.Family, Is.EqualTo((byte)10));
        Assert.That(p.QueueNumber, Is.EqualTo((ushort)5));
        Assert.That(p.PacketId, Is.EqualTo(42u));
        Assert.That(p.HardwareProtocol, Is.EqualTo((ushort)0x86DD));
        Assert.That(p.Hook, Is.EqualTo(NetfilterHook.PostRouting));
        Assert.That(p.Mark, Is.EqualTo(0x11u));
        Assert.That(p.InDeviceIndex, Is.EqualTo(3u));
        Assert.That(p.OutDeviceIndex, Is.EqualTo(4u));
        Assert.That(p.Payload.ToArray(), Is.EqualTo(ip));
        Assert.That(p.HasConntrack, Is.True);
        Assert.That(p.Conntrack.Length, Is.EqualTo(8));
        Assert.That(p.ConntrackInfo, Is.EqualTo(2u));
        Assert.That(p.OriginalLength, Is.EqualTo(1500));
        Assert.That(p.IsComplete, Is.False);
        Assert.That(p.SkbInfo, Is.EqualTo(NfqueueSkbInfo.ChecksumNotReady));
    }

    [Test]
    public void TryReadPacket_OnlyHeader_DefaultsForAbsentAttributes()
    {
        var message = BuildPacket(2, 0, a => a.Add((1, [0, 0, 0, 1, 8, 0, 0])));
        var reader = new NetlinkMessageReader(message);
        reader.TryReadNext(out var m);

        Assert.That(NfqueueCodec.TryReadPacket(m, out var p), Is.EqualTo(NetlinkStatus.Ok));
        Assert.That(p.Mark, Is.Zero);
        Assert.That(p.Payload.IsEmpty, Is.True);
        Assert.That(p.HasConntrack, Is.False);
        Assert.That(p.ConntrackInfo, Is.Null);
        Assert.That(p.IsComplete, Is.True);
    }

    [Test]
    public void TryReadPacket_Timestamp_MicrosecondsSinceTheEpoch_AbsentIsZero()
    {
        // struct nfqnl_msg_packet_timestamp: be64 seconds, be64 microseconds.
        byte[] timestamp = [0, 0, 0, 0, 0x6A, 0x2B, 0x3C, 0x4D, 0, 0, 0, 0, 0, 0x07, 0xA1, 0x1F];
        var stamped = BuildPacket(2, 0, a =>
        {
            a.Add((1, [0, 0, 0, 1, 8, 0, 0]));
            a.Add((4, timestamp));
        });
        var plain = BuildPacket(2, 0, a => a.Add((1, [0, 0, 0, 1, 8, 0, 0])));
        var reader = new NetlinkMessageReader(stamped);
        reader.TryReadNext(out var m);
        var plainReader = new NetlinkMessageReader(plain);
        plainReader.TryReadNext(out var n);

        Assert.That(NfqueueCodec.TryReadPacket(m, out var p), Is.EqualTo(NetlinkStatus.Ok));
        Assert.That(p.TimestampMicroseconds, Is.EqualTo(0x6A2B3C4DL * 1_000_000 + 0x07A11F));
        Assert.That(NfqueueCodec.TryReadPacket(n, out var q), Is.EqualTo(NetlinkStatus.Ok));
        Assert.That(q.TimestampMicroseconds, Is.Zero);
    }

    [Test]
    public void TryReadPacket_ShortTimestamp_BadAttributePayload() =>
        Assert.That(ReadPacketStatus(BuildPacket(2, 0, a =>
        {
            a.Add((1, [0, 0, 0, 1, 8, 0, 0]));
            a.Add((4, [0, 0, 0, 1]));
        })), Is.EqualTo(NetlinkStatus.BadAttributePayload));

    [Test]
    public void TryReadPacket_NoPacketHeader_MissingPacketHeader() =>
        Assert.That(ReadPacketStatus(BuildPacket(2, 0, a => a.Add((10, [0x45])))), Is.EqualTo(NetlinkStatus.MissingPacketHeader));

    [Test]
    public void TryReadPacket_ShortPacketHeader_BadAttributePayload() =>
        Assert.That(ReadPacketStatus(BuildPacket(2, 0, a => a.Add((1, [0, 0, 0, 1])))), Is.EqualTo(NetlinkStatus.BadAttributePayload));

    [Test]
    public void TryReadPacket_MarkOfWrongSize_BadAttributePayload() =>
        Assert.That(ReadPacketStatus(BuildPacket(2, 0, a =>
        {
            a.Add((1, [0, 0, 0, 1, 8, 0, 0]));
            a.Add((3, [0, 1]));
        })), Is.EqualTo(NetlinkStatus.BadAttributePayload));

    [Test]
    public void TryReadPacket_AttributeLengthPastMessage_BadAttributeLength()
    {
        var message = BuildPacket(2, 0, a => a.Add((1, [0, 0, 0, 1, 8, 0, 0])));
        // Claim 200 bytes for the first attribute.
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(20), 200);
        if (!BitConverter.IsLittleEndian)
        {
            BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(20), 200);
        }

        Assert.That(ReadPacketStatus(message), Is.EqualTo(NetlinkStatus.BadAttributeLength));
    }

    [Test]
    public void TryReadPacket_BodyShorterThanNfgenHeader_Truncated()
    {
        byte[] message = [.. Host32(18), .. Host16(0x0300), .. Host16(0), .. Host32(0), .. Host32(0), 2, 0];
        Assert.That(ReadPacketStatus(message), Is.EqualTo(NetlinkStatus.Truncated));
    }

    [Test]
    public void TryReadPacket_ErrorMessage_UnexpectedType()
    {
        var message = BuildError(0, 1);
        Assert.That(ReadPacketStatus(message), Is.EqualTo(NetlinkStatus.UnexpectedType));
    }

    [Test]
    public void TryReadError_AckAndFailure_ErrnoAndRequestSequence()
    {
        var reader = new NetlinkMessageReader([.. BuildError(0, 11), .. BuildError(-1, 12)]);
        reader.TryReadNext(out var ack);
        var ackStatus = NfqueueCodec.TryReadError(ack, out var ackError, out var ackSeq);
        reader.TryReadNext(out var failure);
        var failureStatus = NfqueueCodec.TryReadError(failure, out var error, out var seq);

        Assert.That((ackStatus, ackError, ackSeq), Is.EqualTo((NetlinkStatus.Ok, 0, 11u)));
        Assert.That((failureStatus, error, seq), Is.EqualTo((NetlinkStatus.Ok, -1, 12u)));
        Assert.That(reader.Status, Is.EqualTo(NetlinkStatus.Ok));
    }

    [Test]
    public void MessageReader_LengthBelowHeader_BadMessageLength()
    {
        byte[] message = [.. Host32(8), .. Host16(2), .. Host16(0), .. Host32(0), .. Host32(0)];
        var reader = new NetlinkMessageReader(message);

        Assert.That(reader.TryReadNext(out _), Is.False);
        Assert.That(reader.Status, Is.EqualTo(NetlinkStatus.BadMessageLength));
    }

    [Test]
    public void MessageReader_LengthPastDatagram_BadMessageLength()
    {
        byte[] message = [.. Host32(64), .. Host16(2), .. Host16(0), .. Host32(0), .. Host32(0)];
        var reader = new NetlinkMessageReader(message);

        Assert.That(reader.TryReadNext(out _), Is.False);
        Assert.That(reader.Status, Is.EqualTo(NetlinkStatus.BadMessageLength));
    }

    [Test]
    public void MessageReader_FewerBytesThanHeader_Truncated()
    {
        var reader = new NetlinkMessageReader(new byte[10]);

        Assert.That(reader.TryReadNext(out _), Is.False);
        Assert.That(reader.Status, Is.EqualTo(NetlinkStatus.Truncated));
    }

    [Test]
    public void Writer_BufferTooSmall_ThrowsArgumentException() =>
        Assert.That(() =>
        {
            var w = new NetlinkWriter(new byte[16]);
            NfqueueCodec.WriteConfigCommand(ref w, 1, 0, NfqueueCommand.Bind);
        }, Throws.ArgumentException);

    [FsProperty(MaxTest = 1000)]
    public bool Decoders_ArbitraryBytes_NeverThrow(byte[] data)
    {
        var reader = new NetlinkMessageReader(data ?? []);
        var count = 0;
        while (reader.TryReadNext(out var m) && count++ < 1000)
        {
            _ = NfqueueCodec.TryReadPacket(m, out _);
            _ = NfqueueCodec.TryReadError(m, out _, out _);
        }

        return true;
    }

    [FsProperty(MaxTest = 500)]
    public bool Decoders_PacketMessageWithArbitraryAttributes_StatusNeverException(byte[] attributes, uint id)
    {
        // A valid message header and packet header followed by arbitrary attribute bytes.
        var message = BuildPacket(2, 1, a => a.Add((1, [(byte)(id >> 24), (byte)(id >> 16), (byte)(id >> 8), (byte)id, 8, 0, 0])));
        byte[] full = [.. message, .. attributes ?? []];
        BinaryPrimitives.WriteUInt32LittleEndian(full, (uint)full.Length);
        if (!BitConverter.IsLittleEndian)
        {
            BinaryPrimitives.WriteUInt32BigEndian(full, (uint)full.Length);
        }

        var reader = new NetlinkMessageReader(full);
        reader.TryReadNext(out var m);
        var status = NfqueueCodec.TryReadPacket(m, out var p);
        return status != NetlinkStatus.Ok || p.PacketId == id;
    }

    [FsProperty(MaxTest = 500)]
    public bool WriteVerdict_AnyIdMarkPayload_RoundTrips(uint id, uint mark, byte[] payload, bool withMark)
    {
        payload ??= [];
        if (payload.Length == 0)
        {
            payload = [0x45];
        }

        var buffer = new byte[NfqueueCodec.VerdictLength(payload.Length)];
        var w = new NetlinkWriter(buffer);
        NfqueueCodec.WriteVerdict(ref w, 1, 2, id, NfqueueVerdict.Accept, withMark ? mark : null, payload, replacePayload: true);
        var d = DecodeVerdict(buffer.AsSpan(0, w.Length));
        return d.Id == id && d.Mark == (withMark ? mark : null) && d.Payload!.AsSpan().SequenceEqual(payload) && w.Length % 4 == 0;
    }

    [FsProperty(MaxTest = 500)]
    public bool MaskedMark_AnyValues_ChangesOnlyMaskBits(uint current, uint value, uint mask)
    {
        var result = NfqueueClient.MaskedMark(current, value, mask);
        return (result & ~mask) == (current & ~mask) && (result & mask) == (value & mask);
    }

    private static NetlinkStatus ReadPacketStatus(byte[] message)
    {
        var reader = new NetlinkMessageReader(message);
        return reader.TryReadNext(out var m) ? NfqueueCodec.TryReadPacket(m, out _) : reader.Status;
    }

    /// <summary>A kernel-style packet message built by hand (not with the writer under test).</summary>
    private static byte[] BuildPacket(byte family, ushort queue, Action<List<(int Type, byte[] Value)>> fill)
    {
        var attrs = new List<(int Type, byte[] Value)>();
        fill(attrs);
        var body = new List<byte> { family, 0, (byte)(queue >> 8), (byte)queue };
        foreach (var (type, value) in attrs)
        {
            body.AddRange(Host16((ushort)(4 + value.Length)));
            body.AddRange(Host16((ushort)type));
            body.AddRange(value);
            while (body.Count % 4 != 0)
            {
                body.Add(0);
            }
        }

        return [.. Host32((uint)(16 + body.Count)), .. Host16(0x0300), .. Host16(0), .. Host32(0), .. Host32(0), .. body];
    }

    private static byte[] BuildError(int error, uint requestSequence) =>
    [
        .. Host32(36), .. Host16(2), .. Host16(0), .. Host32(0), .. Host32(0),
        .. Host32((uint)error),
        .. Host32(28), .. Host16(0x0302), .. Host16(5), .. Host32(requestSequence), .. Host32(0),
    ];

    private static (ushort Type, ushort Queue, uint Verdict, uint Id, uint? Mark, byte[]? Payload) DecodeVerdict(ReadOnlySpan<byte> bytes)
    {
        var reader = new NetlinkMessageReader(bytes);
        Assert.That(reader.TryReadNext(out var m), Is.True);
        uint verdict = 0, id = 0;
        uint? mark = null;
        byte[]? payload = null;
        var attrs = new NetlinkAttributeReader(m.Payload[4..]);
        while (attrs.TryReadNext(out var a))
        {
            switch (a.Type)
            {
                case 2:
                    verdict = BinaryPrimitives.ReadUInt32BigEndian(a.Payload);
                    id = BinaryPrimitives.ReadUInt32BigEndian(a.Payload[4..]);
                    break;
                case 3:
                    mark = BinaryPrimitives.ReadUInt32BigEndian(a.Payload);
                    break;
                case 10:
                    payload = a.Payload.ToArray();
                    break;
            }
        }

        Assert.That(attrs.Status, Is.EqualTo(NetlinkStatus.Ok));
        return (m.Type, BinaryPrimitives.ReadUInt16BigEndian(m.Payload[2..]), verdict, id, mark, payload);
    }

    private static byte[] Host16(ushort v)
    {
        var b = new byte[2];
        BitConverter.TryWriteBytes(b, v);
        return b;
    }

    private static byte[] Host32(uint v)
    {
        var b = new byte[4];
        BitConverter.TryWriteBytes(b, v);
        return b;
    }
}
