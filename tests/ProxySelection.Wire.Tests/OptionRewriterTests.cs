using FsProperty = FsCheck.NUnit.PropertyAttribute;

namespace ProxySelection.Wire.Tests;

public class OptionRewriterTests
{
    private static readonly byte[] MpCapableSyn = [30, 4, 0x01, 0x01];
    private static readonly byte[] EightByteOption = [30, 8, 0xF0, 1, 2, 3, 4, 5];

    [TestCaseSource(typeof(VectorPackets), nameof(VectorPackets.Cases))]
    public void InsertThenRemove_RealPacket_OriginalBytesAndChecksumsVerify(byte[] original)
    {
        var buffer = PacketBuilder.WithSpare(original, 40);
        var headerLength = TcpPacket.Parse(original).Tcp.HeaderLength;
        var error = OptionRewriter.TryInsert(buffer, original.Length, EightByteOption, out var grown);
        if (headerLength + 8 > 60)
        {
            Assert.That(error, Is.EqualTo(WireError.OptionSpaceExceeded));
            Assert.That(buffer.AsSpan(0, original.Length).ToArray(), Is.EqualTo(original));
            return;
        }

        Assert.That(error, Is.EqualTo(WireError.None));
        Assert.That(grown, Is.EqualTo(original.Length + 8));
        Assert.That(InternetChecksum.TryVerify(buffer.AsSpan(0, grown)), Is.EqualTo(WireError.None));
        var parsed = TcpPacket.Parse(buffer.AsSpan(0, grown));
        Assert.That(parsed.Tcp.HeaderLength, Is.EqualTo(headerLength + 8));
        Assert.That(parsed.Tcp.Options[..8].ToArray(), Is.EqualTo(EightByteOption));

        Assert.That(OptionRewriter.TryRemove(buffer, grown, 0, out var shrunk), Is.EqualTo(WireError.None));
        Assert.That(buffer.AsSpan(0, shrunk).ToArray(), Is.EqualTo(original));
    }

    [Test]
    public void TryInsert_FourByteOptionInStockSyn_PadsNothingAndFixesLengths()
    {
        var packet = PacketBuilder.Tcp(false, [2, 4, 5, 0xb4], [], spare: 4);
        Assert.That(OptionRewriter.TryInsert(packet, 44, MpCapableSyn, out var length), Is.EqualTo(WireError.None));
        var parsed = TcpPacket.Parse(packet.AsSpan(0, length));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(length, Is.EqualTo(48));
            Assert.That(parsed.Ip.TotalLength, Is.EqualTo(48));
            Assert.That(parsed.Tcp.DataOffset, Is.EqualTo(7));
            Assert.That(parsed.Tcp.Options.ToArray(), Is.EqualTo(new byte[] { 30, 4, 1, 1, 2, 4, 5, 0xb4 }));
            Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
        }
    }

    [Test]
    public void TryInsert_ThreeByteOption_PrecededByOneNop()
    {
        var packet = PacketBuilder.Tcp(true, [], [0xAB], spare: 8);
        Assert.That(OptionRewriter.TryInsert(packet, 61, [30, 3, 0x50], out var length), Is.EqualTo(WireError.None));
        var parsed = TcpPacket.Parse(packet.AsSpan(0, length));
        Assert.That(parsed.Tcp.Options.ToArray(), Is.EqualTo(new byte[] { 1, 30, 3, 0x50 }));
        Assert.That(parsed.Ip.PayloadLength, Is.EqualTo(25));
        Assert.That(parsed.Tcp.Payload.ToArray(), Is.EqualTo(new byte[] { 0xAB }));
        Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
    }

    [Test]
    public void TryInsert_OptionSpaceFull_OptionSpaceExceededAndPacketUnchanged()
    {
        var options = Enumerable.Repeat((byte)1, 36).ToArray();
        var packet = PacketBuilder.Tcp(false, options, [], spare: 40);
        var before = packet.ToArray();
        Assert.That(OptionRewriter.TryInsert(packet, 76, EightByteOption, out _), Is.EqualTo(WireError.OptionSpaceExceeded));
        Assert.That(packet, Is.EqualTo(before));
    }

    [Test]
    public void TryInsert_NoSpareRoom_BufferTooSmall()
    {
        var packet = PacketBuilder.Tcp(false, [], []);
        Assert.That(OptionRewriter.TryInsert(packet, packet.Length, MpCapableSyn, out _), Is.EqualTo(WireError.BufferTooSmall));
    }

    [Test]
    public void TryInsert_OptionLengthByteWrong_BadOptionLength()
    {
        var packet = PacketBuilder.Tcp(false, [], [], spare: 8);
        Assert.That(OptionRewriter.TryInsert(packet, 40, [30, 5, 0, 0], out _), Is.EqualTo(WireError.BadOptionLength));
    }

    [Test]
    public void TryInsert_MalformedOptionArea_RefusedWithReaderError()
    {
        var packet = PacketBuilder.Tcp(false, [2, 0, 0, 0], [], spare: 8);
        Assert.That(OptionRewriter.TryInsert(packet, 44, MpCapableSyn, out _), Is.EqualTo(WireError.BadOptionLength));
    }

    [Test]
    public void TryInsert_MalformedPacket_RefusedWithParseError()
    {
        var packet = PacketBuilder.Tcp(false, [], [], spare: 8);
        packet[0] = 0x44;
        Assert.That(OptionRewriter.TryInsert(packet, 40, MpCapableSyn, out _), Is.EqualTo(WireError.BadIhl));
    }

    [Test]
    public void TryInsertMptcp_MpCapableStruct_WritesAndFixes()
    {
        var packet = PacketBuilder.Tcp(false, [], [], spare: 12);
        var option = new MpCapable(MpCapableForm.SenderKey, 1, MpCapableFlags.HmacSha256, senderKey: 0x0102030405060708);
        Assert.That(OptionRewriter.TryInsertMptcp(packet, 40, option, out var length), Is.EqualTo(WireError.None));
        Assert.That(length, Is.EqualTo(52));
        Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
        var area = TcpPacket.Parse(packet.AsSpan(0, length)).Tcp.Options;
        Assert.That(MptcpOption.TryParse(area, out var parsed), Is.EqualTo(WireError.None));
        Assert.That(parsed.MpCapable, Is.EqualTo(option));
    }

    [Test]
    public void TryRemove_ByKindWithoutNopsAround_TurnsRemainderIntoNops()
    {
        // WS (3 bytes) has no NOP beside it: its bytes become NOPs (3 % 4 = 3 stay), nothing is removed.
        byte[] options = [2, 4, 5, 0xb4, 3, 3, 7, 30, 4, 1, 1, 0];
        var packet = PacketBuilder.Tcp(false, options, [1, 2, 3]);
        Assert.That(OptionRewriter.TryRemove(packet, packet.Length, TcpOptionKind.WindowScale, out var length), Is.EqualTo(WireError.None));
        var parsed = TcpPacket.Parse(packet.AsSpan(0, length));
        Assert.That(parsed.Tcp.Options.ToArray(), Is.EqualTo(new byte[] { 2, 4, 5, 0xb4, 1, 1, 1, 30, 4, 1, 1, 0 }));
        Assert.That(length, Is.EqualTo(packet.Length));
        Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
    }

    [Test]
    public void TryRemove_OddOffsetOptionWithNopsAfter_RemovesWordsAndVerifies()
    {
        // NOP, WS(3) at offset 1, then NOP NOP NOP NOP, MSS.
        byte[] options = [1, 3, 3, 7, 1, 1, 1, 1, 2, 4, 5, 0xb4];
        var packet = PacketBuilder.Tcp(false, options, [1, 2, 3, 4, 5]);
        Assert.That(OptionRewriter.TryRemove(packet, packet.Length, 1, out var length), Is.EqualTo(WireError.None));
        var parsed = TcpPacket.Parse(packet.AsSpan(0, length));
        Assert.That(parsed.Tcp.Options.ToArray(), Is.EqualTo(new byte[] { 1, 1, 1, 1, 2, 4, 5, 0xb4 }));
        Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
    }

    [Test]
    public void TryRemove_OffsetNotAtOptionStart_OptionNotFound()
    {
        var packet = PacketBuilder.Tcp(false, [2, 4, 5, 0xb4], []);
        Assert.That(OptionRewriter.TryRemove(packet, packet.Length, 1, out _), Is.EqualTo(WireError.OptionNotFound));
        Assert.That(OptionRewriter.TryRemove(packet, packet.Length, TcpOptionKind.Mptcp, out _), Is.EqualTo(WireError.OptionNotFound));
    }

    [Test]
    public void Recompute_Mode_ProducesVerifyingPacketEvenFromWrongChecksum()
    {
        var packet = PacketBuilder.Tcp(false, [], [1, 2, 3], spare: 4);
        packet[36] ^= 0xFF;
        Assert.That(OptionRewriter.TryInsert(packet, 43, MpCapableSyn, out var length, ChecksumUpdate.Recompute), Is.EqualTo(WireError.None));
        Assert.That(InternetChecksum.TryVerify(packet.AsSpan(0, length)), Is.EqualTo(WireError.None));
    }

    /// <summary>Random packets (v4/v6, random option area, odd or even payload) and random options.</summary>
    [FsProperty(MaxTest = 1000)]
    public bool InsertThenRemove_RandomPacketAndOption_RestoresOriginalAndChecksumsVerify(
        bool ipv6, byte optionWords, byte[] payload, byte kind, byte[] optionData, bool recompute)
    {
        var area = RandomOptionArea(optionWords % 11, optionData ?? []);
        var original = PacketBuilder.Tcp(ipv6, area, payload ?? []);
        var option = new byte[2 + ((optionData?.Length ?? 0) % 39)];
        option[0] = (byte)Math.Max(kind, (byte)2);
        option[1] = (byte)option.Length;
        optionData?.AsSpan(0, option.Length - 2).CopyTo(option.AsSpan(2));

        var buffer = PacketBuilder.WithSpare(original, 40);
        var mode = recompute ? ChecksumUpdate.Recompute : ChecksumUpdate.Incremental;
        var error = OptionRewriter.TryInsert(buffer, original.Length, option, out var grown, mode);
        var grow = option.Length + ((4 - (option.Length & 3)) & 3);
        if (20 + area.Length + grow > 60)
        {
            return error == WireError.OptionSpaceExceeded && buffer.AsSpan(0, original.Length).SequenceEqual(original);
        }

        if (error != WireError.None || InternetChecksum.TryVerify(buffer.AsSpan(0, grown)) != WireError.None)
        {
            return false;
        }

        var pad = grow - option.Length;
        return OptionRewriter.TryRemove(buffer, grown, pad, out var shrunk, mode) == WireError.None
            && buffer.AsSpan(0, shrunk).SequenceEqual(original);
    }

    /// <summary>Removing any option of a valid packet keeps it valid and shrinks it by a multiple of 4.</summary>
    [FsProperty(MaxTest = 1000)]
    public bool RemoveAny_RandomPacket_ChecksumsVerifyAndOptionAreaStaysWellFormed(
        bool ipv6, byte optionWords, byte[] payload, byte[] seed, byte pick)
    {
        var area = RandomOptionArea(Math.Max(1, optionWords % 11), seed ?? []);
        var packet = PacketBuilder.Tcp(ipv6, area, payload ?? []);
        var offsets = new List<int>();
        var reader = new TcpOptionReader(area);
        while (reader.MoveNext())
        {
            offsets.Add(reader.Current.Offset);
        }

        var offset = offsets[pick % offsets.Count];
        if (OptionRewriter.TryRemove(packet, packet.Length, offset, out var length) != WireError.None)
        {
            return false;
        }

        var shrunk = packet.AsSpan(0, length);
        return (packet.Length - length) % 4 == 0
            && InternetChecksum.TryVerify(shrunk) == WireError.None
            && TcpOptionReader.Validate(TcpPacket.Parse(shrunk).Tcp.Options, out _) == WireError.None;
    }

    /// <summary>A well-formed option area of <paramref name="words"/> 32-bit words built from <paramref name="seed"/>.</summary>
    private static byte[] RandomOptionArea(int words, byte[] seed)
    {
        var area = new byte[words * 4];
        var position = 0;
        var s = 0;
        byte Next() => seed.Length == 0 ? (byte)(s++ * 37) : seed[s++ % seed.Length];
        while (position < area.Length)
        {
            var room = area.Length - position;
            var choice = Next() % 4;
            if (choice == 0 || room < 2)
            {
                area[position++] = 1;
                continue;
            }

            var length = 2 + (Next() % (room - 1));
            area[position] = (byte)(choice == 1 ? 30 : 2 + (Next() % 200));
            area[position + 1] = (byte)length;
            for (var i = 2; i < length; i++)
            {
                area[position + i] = Next();
            }

            position += length;
        }

        return area;
    }
}
