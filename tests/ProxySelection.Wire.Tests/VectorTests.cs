namespace ProxySelection.Wire.Tests;

public class VectorTests
{
    [TestCaseSource(typeof(VectorPackets), nameof(VectorPackets.Cases))]
    public void TcpPacketTryParse_RealPacket_ParsesAndChecksumsVerify(byte[] packet)
    {
        Assert.That(TcpPacket.TryParse(packet, out _), Is.EqualTo(WireError.None));
        Assert.That(InternetChecksum.TryVerify(packet), Is.EqualTo(WireError.None));
    }

    [TestCaseSource(typeof(VectorPackets), nameof(VectorPackets.Cases))]
    public void TcpOptionReader_RealPacket_WalksWholeOptionAreaWithoutError(byte[] packet)
    {
        var tcp = TcpPacket.Parse(packet).Tcp;
        var reader = tcp.GetOptionReader();
        var covered = 0;
        foreach (var option in reader)
        {
            Assert.That(option.Offset, Is.EqualTo(covered));
            covered += option.Length;
        }

        Assert.That(reader.Error, Is.EqualTo(WireError.None));
    }

    [TestCaseSource(typeof(VectorPackets), nameof(VectorPackets.Cases))]
    public void MptcpOption_RealPacket_ParseThenWriteReproducesBytes(byte[] packet)
    {
        var tcp = TcpPacket.Parse(packet).Tcp;
        var reader = tcp.GetOptionReader();
        Span<byte> written = stackalloc byte[40];
        while (reader.MoveNext())
        {
            if (reader.Current.Kind != TcpOptionKind.Mptcp)
            {
                continue;
            }

            var original = reader.CurrentBytes;
            Assert.That(MptcpOption.TryParse(original, out var mptcp), Is.EqualTo(WireError.None));
            Assert.That(mptcp.TryWrite(written, out var length), Is.EqualTo(WireError.None));
            Assert.That(written[..length].ToArray(), Is.EqualTo(original.ToArray()));
        }

        Assert.That(reader.Error, Is.EqualTo(WireError.None));
    }
}
