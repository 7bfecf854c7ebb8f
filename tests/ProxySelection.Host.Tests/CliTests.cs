using System.Text.Json;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests;

public class CliTests
{
    // mpc-basic-v4-001: MP_CAPABLE v1 SYN flags H.
    private const string MpCapableSyn =
        "450000407ba84000400632e8c6120001c61200029ee64650748ffe9200000000b002faf0df2f0000020405b40402080afbba5e97000000000103030a1e040101";

    [Test]
    public void Help_ExitsZero()
    {
        Assert.That(Run(["--help"]).Code, Is.Zero);
    }

    [Test]
    public void DecodeHex_VectorPacket_PrintsOneObjectWithTsharkFields()
    {
        var (code, lines, _) = Run(["decode", "--hex", MpCapableSyn]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(lines, Has.Count.EqualTo(1));
        var packet = lines[0];
        var options = packet.GetProperty("options");
        var expectedFields = JsonDocument.Parse(
            """{"subtype": 0, "version": 1, "flags": 1, "checksumreq.flags": 0, "extensibility.flag": 0, "nomoresubflows.flag": 0, "sha256.flag": 1, "reserved.flag": 0}""").RootElement;
        using (Assert.EnterMultipleScope())
        {
            Assert.That(packet.GetProperty("src").GetString(), Is.EqualTo("198.18.0.1"));
            Assert.That(packet.GetProperty("dst").GetString(), Is.EqualTo("198.18.0.2"));
            Assert.That(packet.GetProperty("sport").GetInt32(), Is.EqualTo(40678));
            Assert.That(packet.GetProperty("seq").GetUInt32(), Is.EqualTo(1955593874u));
            Assert.That(packet.GetProperty("tcp_flags").GetString(), Is.EqualTo("S"));
            Assert.That(packet.GetProperty("tcp_checksum_status").GetString(), Is.EqualTo("Checksum Status: Good"));
            Assert.That(options.GetArrayLength(), Is.EqualTo(6));
            Assert.That(options[0].GetRawText(), Is.EqualTo("""{"kind":2,"length":4,"mss":1460}"""));
            Assert.That(options[5].GetProperty("subtype").GetString(), Is.EqualTo("MP_CAPABLE"));
            Assert.That(Decoded.SameJson(options[5].GetProperty("fields"), expectedFields), Is.True, options[5].GetRawText());
            Assert.That(options[5].GetProperty("raw").GetString(), Is.EqualTo("1e040101"));
        }
    }

    [Test]
    public void DecodeHex_OptionLengthOne_PrintsErrorObjectWithOffsetOfTheLengthByte()
    {
        var packet = Convert.FromHexString(MpCapableSyn);
        packet[41] = 1; // MSS option (at 40) with length 1
        var (code, lines, _) = Run(["decode", "--hex", Convert.ToHexString(packet)]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(lines, Has.Count.EqualTo(1));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(lines[0].GetProperty("error").GetString(), Is.EqualTo("BadOptionLength"));
            Assert.That(lines[0].GetProperty("offset").GetInt32(), Is.EqualTo(41));
            Assert.That(lines[0].GetProperty("reason").GetString(), Is.Not.Empty);
        }
    }

    [Test]
    public void DecodeHex_MptcpLengthNotFittingSubtype_PrintsBadMptcpLengthAtTheLengthByte()
    {
        var packet = Convert.FromHexString(MpCapableSyn);
        // The 4-byte MP_CAPABLE at 60 becomes a DSS announcing a data ACK, which needs 8 bytes.
        packet[62] = 0x20;
        packet[63] = 0x01;
        var (code, lines, _) = Run(["decode", "--hex", Convert.ToHexString(packet)]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(lines.Single().GetProperty("error").GetString(), Is.EqualTo("BadMptcpLength"));
            Assert.That(lines.Single().GetProperty("offset").GetInt32(), Is.EqualTo(61));
        }
    }

    [TestCase("4500", "Truncated", TestName = "DecodeHex_TwoBytes_PrintsTruncatedError")]
    [TestCase("75000028000000004006000000000000000000000000000000000000000000005000000000000000", "BadIpVersion", TestName = "DecodeHex_Version7_PrintsBadIpVersionError")]
    [TestCase("44000028000000004006000000000000000000000000000000000000000000005000000000000000", "BadIhl", TestName = "DecodeHex_Ihl4_PrintsBadIhlError")]
    [TestCase("45000028000000004006000000000000000000000000000000000000000000004000000000000000", "BadDataOffset", TestName = "DecodeHex_DataOffset4_PrintsBadDataOffsetError")]
    public void DecodeHex_MalformedPacket_PrintsErrorObject(string hex, string expectedError)
    {
        var (code, lines, _) = Run(["decode", "--hex", hex]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(lines.Single().GetProperty("error").GetString(), Is.EqualTo(expectedError));
        Assert.That(lines.Single().TryGetProperty("offset", out _), Is.True);
    }

    [Test]
    public void DecodeHex_NotHex_PrintsInvalidHexAndExitsWithUsage()
    {
        var (code, lines, _) = Run(["decode", "--hex", "45zz"]);
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(lines.Single().GetProperty("error").GetString(), Is.EqualTo("InvalidHex"));
        Assert.That(lines.Single().GetProperty("offset").GetInt32(), Is.EqualTo(2));
    }

    [Test]
    public void DecodeHex_SeparatorsAndPrefix_AreIgnored()
    {
        var spaced = "0x" + string.Join(":", Enumerable.Range(0, MpCapableSyn.Length / 2).Select(i => MpCapableSyn.Substring(i * 2, 2)));
        var (code, lines, _) = Run(["decode", "--hex", spaced]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(lines.Single().GetProperty("sport").GetInt32(), Is.EqualTo(40678));
    }

    [TestCase("decode", TestName = "Decode_NoInput_ExitsWithUsage")]
    [TestCase("decode --hex 4500 --pcap x.pcap", TestName = "Decode_BothInputs_ExitsWithUsage")]
    [TestCase("decode --frobnicate", TestName = "Decode_UnknownOption_ExitsWithUsage")]
    public void Decode_BadCommandLine_ExitsWithUsage(string commandLine)
    {
        var (code, _, stderr) = Run(commandLine.Split(' '));
        Assert.That(code, Is.EqualTo(ExitCodes.Usage));
        Assert.That(stderr, Is.Not.Empty);
    }

    [Test]
    public void DecodePcap_MissingFile_ExitsWithFileNotReadable()
    {
        var (code, _, stderr) = Run(["decode", "--pcap", Path.Combine(Path.GetTempPath(), $"absent-{Guid.NewGuid():N}.pcap")]);
        Assert.That(code, Is.EqualTo(ExitCodes.FileNotReadable));
        Assert.That(stderr, Does.Contain("cannot read"));
    }

    [Test]
    public void DecodePcap_NotAPcap_PrintsErrorAndExitsWithFileNotReadable()
    {
        using var file = new TempFile("not a pcap file at all, just text"u8.ToArray());
        var (code, lines, _) = Run(["decode", "--pcap", file.Path]);
        Assert.That(code, Is.EqualTo(ExitCodes.FileNotReadable));
        Assert.That(lines.Single().GetProperty("error").GetString(), Is.EqualTo("BadMagic"));
    }

    [Test]
    public void DecodePcap_VectorCapture_PrintsOneObjectPerFrameWithoutErrors()
    {
        var record = VectorFiles.Records().First();
        var (code, lines, _) = Run(["decode", "--pcap", record.PcapPath]);
        Assert.That(code, Is.EqualTo(ExitCodes.Ok));
        Assert.That(lines.Select(l => l.GetProperty("frame").GetInt32()), Is.EqualTo(Enumerable.Range(1, lines.Count)));
        Assert.That(lines.Where(l => l.TryGetProperty("error", out _)), Is.Empty);
        var same = lines[record.Frame - 1];
        Assert.That(same.GetProperty("seq").GetUInt32(), Is.EqualTo(record.Json.GetProperty("seq").GetUInt32()));
    }

    [Test]
    public void DecodePcap_ArpFrameThenCutRecord_ReportsBothAndDecodesTheRest()
    {
        var packet = Convert.FromHexString(MpCapableSyn);
        using var stream = new MemoryStream();
        using (var writer = new PcapWriter(stream, PcapLinkType.Ethernet))
        {
            writer.WriteIpPacket(packet);
            writer.WriteFrame(Convert.FromHexString("ffffffffffff0000000000020806" + new string('0', 56)), 0, 0);
            writer.WriteIpPacket(packet);
        }

        var bytes = stream.ToArray();
        using var file = new TempFile(bytes[..^10]);
        var (code, lines, _) = Run(["decode", "--pcap", file.Path]);
        Assert.That(code, Is.EqualTo(ExitCodes.FileNotReadable));
        Assert.That(lines, Has.Count.EqualTo(3));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(lines[0].GetProperty("sport").GetInt32(), Is.EqualTo(40678));
            Assert.That(lines[1].GetProperty("error").GetString(), Is.EqualTo("NotIp"));
            Assert.That(lines[1].GetProperty("frame").GetInt32(), Is.EqualTo(2));
            Assert.That(lines[2].GetProperty("error").GetString(), Is.EqualTo("TruncatedRecordData"));
        }
    }

    private static (int Code, List<JsonElement> Lines, string Stderr) Run(string[] args)
    {
        using var stdout = new MemoryStream();
        using var stderr = new StringWriter();
        int code = Cli.Run(args, stdout, stderr);
        // Help text is not JSON; only decode output is parsed.
        var lines = args.Contains("--help") ? [] : Decoded.Lines(stdout.ToArray());
        return (code, lines, stderr.ToString());
    }

    private sealed class TempFile : IDisposable
    {
        public TempFile(byte[] content)
        {
            Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"proxysel-{Guid.NewGuid():N}.pcap");
            File.WriteAllBytes(Path, content);
        }

        public string Path { get; }

        public void Dispose() => File.Delete(Path);
    }
}
