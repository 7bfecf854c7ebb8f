namespace ProxySelection.Wire.Tests;

public class TcpOptionTests
{
    private static List<TcpOption> ReadAll(byte[] area, out WireError error, out int errorOffset)
    {
        var list = new List<TcpOption>();
        var reader = new TcpOptionReader(area);
        while (reader.MoveNext())
        {
            list.Add(reader.Current);
        }

        error = reader.Error;
        errorOffset = reader.ErrorOffset;
        return list;
    }

    [Test]
    public void Reader_RealMpCapableSyn_YieldsOptionsInWireOrder()
    {
        var options = TcpPacket.Parse(VectorPackets.Get("mpc-basic-v4-001")).Tcp.Options.ToArray();
        var list = ReadAll(options, out var error, out _);
        Assert.That(error, Is.EqualTo(WireError.None));
        Assert.That(list, Is.EqualTo(new[]
        {
            new TcpOption(TcpOptionKind.Mss, 0, 4),
            new TcpOption(TcpOptionKind.SackPermitted, 4, 2),
            new TcpOption(TcpOptionKind.Timestamps, 6, 10),
            new TcpOption(TcpOptionKind.Nop, 16, 1),
            new TcpOption(TcpOptionKind.WindowScale, 17, 3),
            new TcpOption(TcpOptionKind.Mptcp, 20, 4),
        }));
    }

    [Test]
    public void Reader_EndOfList_StopsAndReportsPaddingStart()
    {
        byte[] area = [1, 0, 0, 0];
        var reader = new TcpOptionReader(area);
        Assert.That(reader.MoveNext(), Is.True);
        Assert.That(reader.MoveNext(), Is.True);
        Assert.That(reader.Current, Is.EqualTo(new TcpOption(TcpOptionKind.EndOfList, 1, 1)));
        Assert.That(reader.MoveNext(), Is.False);
        Assert.That(reader.Error, Is.EqualTo(WireError.None));
        Assert.That(reader.Position, Is.EqualTo(2));
    }

    [Test]
    public void Reader_UnknownKind_KeptRawWithOffsetAndLength()
    {
        byte[] area = [1, 1, 0xFD, 6, 0xAA, 0xBB, 0xCC, 0xDD];
        var reader = new TcpOptionReader(area);
        reader.MoveNext();
        reader.MoveNext();
        Assert.That(reader.MoveNext(), Is.True);
        Assert.That(reader.Current, Is.EqualTo(new TcpOption((TcpOptionKind)0xFD, 2, 6)));
        Assert.That(reader.CurrentBytes.ToArray(), Is.EqualTo(new byte[] { 0xFD, 6, 0xAA, 0xBB, 0xCC, 0xDD }));
    }

    [TestCase(0)]
    [TestCase(1)]
    public void Reader_LengthZeroOrOne_BadOptionLength(byte length)
    {
        byte[] area = [1, 2, length, 0];
        ReadAll(area, out var error, out var offset);
        Assert.That(error, Is.EqualTo(WireError.BadOptionLength));
        Assert.That(offset, Is.EqualTo(2));
    }

    [Test]
    public void Reader_LengthPastHeader_OptionRunsPastHeader()
    {
        byte[] area = [1, 8, 10, 0, 0, 0, 0, 0];
        ReadAll(area, out var error, out var offset);
        Assert.That(error, Is.EqualTo(WireError.OptionRunsPastHeader));
        Assert.That(offset, Is.EqualTo(2));
    }

    [Test]
    public void Reader_LengthByteMissing_OptionRunsPastHeader()
    {
        byte[] area = [1, 1, 1, 2];
        ReadAll(area, out var error, out var offset);
        Assert.That(error, Is.EqualTo(WireError.OptionRunsPastHeader));
        Assert.That(offset, Is.EqualTo(3));
    }

    [Test]
    public void TryFind_Absent_OptionNotFound() =>
        Assert.That(TcpOptionReader.TryFind([1, 1, 1, 1], TcpOptionKind.Mss, out _), Is.EqualTo(WireError.OptionNotFound));

    [Test]
    public void TryFindMptcp_SecondMptcpOption_FoundBySubtype()
    {
        // fastclose-v4: a RST carrying MP_FASTCLOSE then MP_TCPRST.
        var packet = VectorPackets.Packets.First(p => p.Id.StartsWith("fastclose-v4", StringComparison.Ordinal)).Packet;
        var options = TcpPacket.Parse(packet).Tcp.Options;
        Assert.That(TcpOptionReader.TryFindMptcp(options, MptcpSubtype.MpTcpRst, out var rst), Is.EqualTo(WireError.None));
        Assert.That(TcpOptionReader.TryFindMptcp(options, MptcpSubtype.MpFastClose, out var close), Is.EqualTo(WireError.None));
        Assert.That(rst.Offset, Is.GreaterThan(close.Offset));
        Assert.That(TcpOptionReader.TryFindMptcp(options, MptcpSubtype.MpJoin, out _), Is.EqualTo(WireError.OptionNotFound));
    }

    [Test]
    public void Writer_EveryKind_ReadsBackSameValues()
    {
        var buffer = new byte[40];
        var writer = new TcpOptionWriter(buffer);
        Assert.That(writer.TryWriteMss(1460), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteSackPermitted(), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteTimestamps(0xDEADBEEF, 7), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteNop(), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteWindowScale(7), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteSack([new SackBlock(1, 2)]), Is.EqualTo(WireError.None));
        Assert.That(writer.TryWriteEndOfList(), Is.EqualTo(WireError.None));
        Assert.That(writer.Position, Is.EqualTo(31));

        var reader = new TcpOptionReader(writer.Written);
        var seen = 0;
        while (reader.MoveNext())
        {
            var bytes = reader.CurrentBytes;
            switch (reader.Current.Kind)
            {
                case TcpOptionKind.Mss:
                    Assert.That(TcpOptionValues.TryReadMss(bytes, out var mss), Is.EqualTo(WireError.None));
                    Assert.That(mss, Is.EqualTo(1460));
                    break;
                case TcpOptionKind.SackPermitted:
                    Assert.That(TcpOptionValues.TryReadSackPermitted(bytes), Is.EqualTo(WireError.None));
                    break;
                case TcpOptionKind.Timestamps:
                    Assert.That(TcpOptionValues.TryReadTimestamps(bytes, out var ts), Is.EqualTo(WireError.None));
                    Assert.That(ts, Is.EqualTo(new TcpTimestamps(0xDEADBEEF, 7)));
                    break;
                case TcpOptionKind.WindowScale:
                    Assert.That(TcpOptionValues.TryReadWindowScale(bytes, out var shift), Is.EqualTo(WireError.None));
                    Assert.That(shift, Is.EqualTo(7));
                    break;
                case TcpOptionKind.Sack:
                    Assert.That(TcpOptionValues.TryReadSack(bytes, out var sack), Is.EqualTo(WireError.None));
                    Assert.That(sack.Count, Is.EqualTo(1));
                    Assert.That(sack[0], Is.EqualTo(new SackBlock(1, 2)));
                    break;
            }

            seen++;
        }

        Assert.That(seen, Is.EqualTo(7));
    }

    [Test]
    public void Sack_FourBlocks_RoundTrip()
    {
        SackBlock[] blocks = [new(1, 2), new(3, 4), new(uint.MaxValue, 0), new(0x80000000, 0x80000001)];
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteSack(blocks), Is.EqualTo(WireError.None));
        Assert.That(TcpOptionValues.TryReadSack(writer.Written, out var sack), Is.EqualTo(WireError.None));
        var read = new SackBlock[sack.Count];
        for (var i = 0; i < sack.Count; i++)
        {
            read[i] = sack[i];
        }

        Assert.That(read, Is.EqualTo(blocks));
        Assert.That(writer.TryWriteSack(new SackBlock[5]), Is.EqualTo(WireError.BadArgument));
    }

    [Test]
    public void Sack_RealPacket_BlocksMatchTshark()
    {
        // sack-v4: tshark gives the blocks of the first SACK packet of the scenario.
        var found = false;
        foreach (var (id, packet) in VectorPackets.Packets.Where(p => p.Id.StartsWith("sack-v4", StringComparison.Ordinal)))
        {
            var options = TcpPacket.Parse(packet).Tcp.Options;
            if (TcpOptionReader.TryFind(options, TcpOptionKind.Sack, out var option) != WireError.None)
            {
                continue;
            }

            Assert.That(TcpOptionValues.TryReadSack(option.Slice(options), out var sack), Is.EqualTo(WireError.None), id);
            Assert.That(sack[0].Right - sack[0].Left, Is.GreaterThan(0u), id);
            found = true;
        }

        Assert.That(found, Is.True);
    }

    [TestCase(new byte[] { 5, 2 })]
    [TestCase(new byte[] { 5, 6, 0, 0, 0, 0 })]
    [TestCase(new byte[] { 5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    public void TryReadSack_BadLength_BadOptionLength(byte[] option) =>
        Assert.That(TcpOptionValues.TryReadSack(option, out _), Is.EqualTo(WireError.BadOptionLength));

    [Test]
    public void TryReadMss_WrongLength_BadOptionLength() =>
        Assert.That(TcpOptionValues.TryReadMss([2, 3, 5], out _), Is.EqualTo(WireError.BadOptionLength));

    [Test]
    public void TryReadTimestamps_LengthByteDisagrees_BadOptionLength() =>
        Assert.That(TcpOptionValues.TryReadTimestamps([8, 9, 0, 0, 0, 0, 0, 0, 0, 0], out _), Is.EqualTo(WireError.BadOptionLength));

    [Test]
    public void TryReadWindowScale_OtherKind_BadArgument() =>
        Assert.That(TcpOptionValues.TryReadWindowScale([2, 3, 5], out _), Is.EqualTo(WireError.BadArgument));

    [TestCase(0)]
    [TestCase(4)]
    [TestCase(8)]
    [TestCase(16)]
    public void FastOpen_ValidCookie_RoundTrip(int cookieLength)
    {
        var cookie = Enumerable.Range(1, cookieLength).Select(i => (byte)i).ToArray();
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteFastOpen(cookie), Is.EqualTo(WireError.None));
        Assert.That(TcpOptionValues.TryReadFastOpen(writer.Written, out var read), Is.EqualTo(WireError.None));
        Assert.That(read.ToArray(), Is.EqualTo(cookie));
        Assert.That(writer.Written[0], Is.EqualTo(34));
    }

    [TestCase(2)]
    [TestCase(5)]
    [TestCase(18)]
    public void FastOpen_BadCookieLength_Refused(int cookieLength)
    {
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteFastOpen(new byte[cookieLength]), Is.EqualTo(WireError.BadArgument));
        var option = new byte[2 + cookieLength];
        option[0] = 34;
        option[1] = (byte)option.Length;
        Assert.That(TcpOptionValues.TryReadFastOpen(option, out _), Is.EqualTo(WireError.BadOptionLength));
    }

    [Test]
    public void Md5_RoundTrip()
    {
        var digest = Enumerable.Range(0, 16).Select(i => (byte)(i * 7)).ToArray();
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteMd5(digest), Is.EqualTo(WireError.None));
        Assert.That(writer.Written[..2].ToArray(), Is.EqualTo(new byte[] { 19, 18 }));
        Assert.That(TcpOptionValues.TryReadMd5(writer.Written, out var read), Is.EqualTo(WireError.None));
        Assert.That(read.ToArray(), Is.EqualTo(digest));
        Assert.That(writer.TryWriteMd5(new byte[15]), Is.EqualTo(WireError.BadArgument));
    }

    [Test]
    public void Authentication_RoundTrip()
    {
        byte[] mac = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteAuthentication(3, 4, mac), Is.EqualTo(WireError.None));
        Assert.That(TcpOptionValues.TryReadAuthentication(writer.Written, out var ao), Is.EqualTo(WireError.None));
        Assert.That(ao.KeyId, Is.EqualTo(3));
        Assert.That(ao.NextKeyId, Is.EqualTo(4));
        Assert.That(ao.Mac.ToArray(), Is.EqualTo(mac));
        Assert.That(TcpOptionValues.TryReadAuthentication([29, 3, 1], out _), Is.EqualTo(WireError.BadOptionLength));
    }

    [Test]
    public void Writer_PastFortyBytes_OptionSpaceExceededAndKeepsWhatWasWritten()
    {
        var writer = new TcpOptionWriter(new byte[64]);
        for (var i = 0; i < 4; i++)
        {
            Assert.That(writer.TryWriteTimestamps(1, 2), Is.EqualTo(WireError.None));
        }

        Assert.That(writer.TryWriteMss(1), Is.EqualTo(WireError.OptionSpaceExceeded));
        Assert.That(writer.Position, Is.EqualTo(40));
    }

    [Test]
    public void Writer_SmallBuffer_BufferTooSmall()
    {
        var writer = new TcpOptionWriter(new byte[3]);
        Assert.That(writer.TryWriteMss(1), Is.EqualTo(WireError.BufferTooSmall));
        Assert.That(writer.Position, Is.EqualTo(0));
    }

    [TestCase(1, 3)]
    [TestCase(2, 2)]
    [TestCase(3, 1)]
    [TestCase(4, 0)]
    public void TryPadWithNops_PadsToWord(int nops, int expectedPad)
    {
        var writer = new TcpOptionWriter(new byte[40]);
        for (var i = 0; i < nops; i++)
        {
            writer.TryWriteEndOfList();
        }

        Assert.That(writer.TryPadWithNops(), Is.EqualTo(WireError.None));
        Assert.That(writer.Position, Is.EqualTo(nops + expectedPad));
    }

    [Test]
    public void TryWriteRaw_UnknownKind_ReadsBackRaw()
    {
        var writer = new TcpOptionWriter(new byte[40]);
        Assert.That(writer.TryWriteRaw(0xFE, [0xF9, 0x89]), Is.EqualTo(WireError.None));
        Assert.That(writer.Written.ToArray(), Is.EqualTo(new byte[] { 0xFE, 4, 0xF9, 0x89 }));
        Assert.That(writer.TryWriteRaw(1, []), Is.EqualTo(WireError.BadArgument));
    }
}
