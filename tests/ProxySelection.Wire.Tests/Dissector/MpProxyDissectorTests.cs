using System.Buffers.Binary;
using System.Globalization;

namespace ProxySelection.Wire.Tests.Dissector;

/// <summary>
/// The Wireshark dissector spec/wireshark/mp_proxy.lua, run by the installed tshark over pcaps built from the spec's
/// Appendix A. The expected values come from the spec's text (vector table, Section 5.4 kinds); Wire's code only
/// builds the IP/TCP packets around the option bytes. tshark missing is a failure, not a skip.
/// </summary>
[NonParallelizable]
public class MpProxyDissectorTests
{
    private static readonly string[] VectorFields =
    [
        "frame.number", "mp_proxy.kind", "mp_proxy.length", "mp_proxy.subtype", "mp_proxy.version", "mp_proxy.experiment",
        "mp_proxy.form", "mp_proxy.p", "mp_proxy.msg", "mp_proxy.prio", "mp_proxy.proxy_id", "mp_proxy.key_id",
        "mp_proxy.flags.c", "mp_proxy.tag", "mp_proxy.status", "mp_proxy.malformed", "mp_proxy.other",
    ];

    private string _dir = "";

    [OneTimeSetUp]
    public void CreateDirectory() => _dir = Directory.CreateTempSubdirectory("mp_proxy_dissector_").FullName;

    [OneTimeTearDown]
    public void DeleteDirectory() => Directory.Delete(_dir, recursive: true);

    [Test]
    public void AppendixA_HasVectorsToDissect() =>
        Assert.That(SpecText.Vectors(), Has.Count.GreaterThanOrEqualTo(15));

    [Test]
    public void EveryAppendixAVector_DecodesToTheSpecsFields()
    {
        var vectors = SpecText.Vectors();
        var kinds = SpecText.MessageKinds();
        var pcap = WritePcap("vectors.pcap", vectors.Select((v, i) => Packet(v.Bytes, v.OnSynAck, i)));
        var rows = Tshark.Fields(pcap, VectorFields);
        Assert.That(rows, Has.Count.EqualTo(vectors.Count));
        Assert.Multiple(() =>
        {
            for (int i = 0; i < vectors.Count; i++)
            {
                var v = vectors[i];
                var row = rows[i];
                string at = v.Name + ": ";
                Assert.That(row["mp_proxy.kind"], Is.EqualTo("30"), at + "kind");
                Assert.That(row["mp_proxy.length"], Is.EqualTo(v.Bytes.Length.ToString(CultureInfo.InvariantCulture)), at + "length");
                Assert.That(row["mp_proxy.subtype"], Is.EqualTo("0x0f"), at + "subtype");
                Assert.That(row["mp_proxy.version"], Is.EqualTo("1"), at + "version");
                Assert.That(row["mp_proxy.experiment"], Is.EqualTo("0xa5"), at + "experiment id");
                Assert.That(row["mp_proxy.form"], Is.EqualTo(v.Form), at + "form");
                Assert.That(row["mp_proxy.status"], Is.EqualTo("Ok"), at + "status");
                Assert.That(row["mp_proxy.malformed"], Is.Empty, at + "malformed");
                Assert.That(row["mp_proxy.other"], Is.Empty, at + "other experiment");
                if (v.Form == "presence")
                {
                    Assert.That(row["mp_proxy.p"] + row["mp_proxy.msg"] + row["mp_proxy.tag"], Is.Empty, at + "presence carries nothing");
                    continue;
                }

                Assert.That(row["mp_proxy.p"], Is.EqualTo("1"), at + "P");
                Assert.That(row["mp_proxy.msg"], Is.EqualTo(kinds[v.Message]), at + "message");
                Assert.That(row["mp_proxy.prio"], Is.EqualTo(v.Priority), at + "priority");
                Assert.That(row["mp_proxy.proxy_id"], Is.EqualTo(v.ProxyId), at + "proxy id");
                Assert.That(row["mp_proxy.key_id"], Is.EqualTo(v.Form == "long" ? v.KeyId : ""), at + "key id");
                Assert.That(row["mp_proxy.flags.c"], Is.EqualTo(v.Form == "long" ? "0" : ""), at + "C flag");
                Assert.That(row["mp_proxy.tag"], Is.EqualTo(v.Hex[(v.Form == "long" ? 16 : 12)..]), at + "tag");
            }
        });
    }

    // Lengths 3, 5, 7 and 40 are not a form (BadLength); 4, 8 and 16 are, but the option list ends before the
    // option does (Truncated). Each is flagged, and the dissector never raises a Lua error.
    [TestCase("1e05f1a5b5", "BadLength")]
    [TestCase("1e07f1a5b50300", "BadLength")]
    [TestCase("1e28f1a5b5030100", "BadLength")]
    [TestCase("1e03f100", "BadLength")]
    [TestCase("011e04f1", "Truncated")]
    [TestCase("010101011e08f1a5", "Truncated")]
    [TestCase("1e10f1a5a5030100e51bc521", "Truncated")]
    public void MangledOption_IsFlaggedMalformed_WithoutLuaError(string optionHex, string status)
    {
        var pcap = WritePcap("malformed-" + optionHex + ".pcap", [Packet(Convert.FromHexString(optionHex), onSynAck: false, 0)]);
        var rows = Tshark.Fields(pcap, VectorFields);
        Assert.That(rows, Has.Count.EqualTo(1));
        Assert.Multiple(() =>
        {
            Assert.That(rows[0]["mp_proxy.status"], Is.EqualTo(status));
            Assert.That(rows[0]["mp_proxy.malformed"], Is.Not.Empty);
            Assert.That(rows[0]["mp_proxy.kind"], Is.EqualTo("30"));
        });
        Assert.That(Tshark.Verbose(pcap), Does.Not.Contain("Lua Error").And.Contain("MP_PROXY malformed"));
    }

    [Test]
    public void OtherExperimentsSubtypeF_IsNotMpProxy_AndTheMpProxyBesideItStillDecodes()
    {
        // Experiment id 0xB7 first, then the spec's short-claim-v4.
        var claim = SpecText.Vectors().Single(v => v.Name == "short-claim-v4");
        byte[] options = [.. Convert.FromHexString("1e08f1b7a5030000"), .. claim.Bytes];
        var pcap = WritePcap("other-experiment.pcap", [Packet(options, onSynAck: true, 0)]);
        var row = Tshark.Fields(pcap, VectorFields).Single();
        Assert.Multiple(() =>
        {
            Assert.That(row["mp_proxy.other"], Is.EqualTo("experiment id 0xb7"));
            Assert.That(row["mp_proxy.status"], Is.EqualTo("UnknownExperiment,Ok"));
            Assert.That(row["mp_proxy.form"], Is.EqualTo("short"), "the other experiment gets no form");
            Assert.That(row["mp_proxy.tag"], Is.EqualTo(claim.Hex[12..]));
            Assert.That(row["mp_proxy.malformed"], Is.Empty);
        });
        Assert.That(Tshark.Verbose(pcap), Does.Not.Contain("More than one MP_PROXY"), "another experiment is no duplicate");
    }

    [Test]
    public void TwoMpProxyOptions_AreFlaggedDuplicate()
    {
        var vectors = SpecText.Vectors();
        byte[] options = [.. vectors.Single(v => v.Name == "short-claim-v4").Bytes, .. vectors.Single(v => v.Name == "short-defer-v4").Bytes];
        var pcap = WritePcap("duplicate.pcap", [Packet(options, onSynAck: true, 0)]);
        Assert.That(Tshark.Verbose(pcap), Does.Contain("More than one MP_PROXY in one segment").And.Not.Contain("Lua Error"));
    }

    [Test]
    public void LaterVersionBesideV1_IsSkipped_NotADuplicate()
    {
        // Section 5.6: a sender in transition may send version 2 beside version 1; the v1 option is the signal.
        var vectors = SpecText.Vectors();
        byte[] options = [.. Convert.FromHexString("1e0cf2a5b5030000aabbccdd"), .. vectors.Single(v => v.Name == "short-claim-v4").Bytes];
        var pcap = WritePcap("v2-beside-v1.pcap", [Packet(options, onSynAck: true, 0)]);
        var verbose = Tshark.Verbose(pcap);
        Assert.Multiple(() =>
        {
            Assert.That(verbose, Does.Contain("not version 1, skipped"));
            Assert.That(verbose, Does.Not.Contain("More than one MP_PROXY in one segment").And.Not.Contain("Lua Error"));
            Assert.That(verbose, Does.Contain("Claim"));
        });
    }

    [TestCase("1e08f1a5b500efc6", "ReservedProxyId")]
    [TestCase("1e08f2a5b503efc6", "UnknownVersion")]
    [TestCase("1e08f1a535030000", "NotFromProxy")]
    [TestCase("1e08f1a5e5030000", "UnknownMessage")]
    public void WellFormedButAbsent_ShowsTheReceiveStatus_NotMalformed(string optionHex, string status)
    {
        var pcap = WritePcap("absent-" + optionHex + ".pcap", [Packet(Convert.FromHexString(optionHex), onSynAck: true, 0)]);
        var row = Tshark.Fields(pcap, VectorFields).Single();
        Assert.Multiple(() =>
        {
            Assert.That(row["mp_proxy.status"], Is.EqualTo(status));
            Assert.That(row["mp_proxy.malformed"], Is.Empty);
        });
    }

    [Test]
    public void FullOptionSpace_ProbeSynAndClaimSynAck_DecodeBesideTheStockOptions()
    {
        // The measured Linux option sets (Section 4) plus MP_PROXY: exactly 40 bytes each. tshark 4.0's own
        // MPTCP code reports a "Dissector bug" on such a SYN/ACK (Section 4.1); the post-dissector must not care.
        var vectors = SpecText.Vectors();
        byte[] stock = Convert.FromHexString("020405b40402080a000000010000000001030307");
        byte[] syn = [.. stock, .. Convert.FromHexString("1e040181"), .. vectors.Single(v => v.Name == "long-probe-v4").Bytes];
        byte[] synAck = [.. stock, .. Convert.FromHexString("1e0c01810102030405060708"), .. vectors.Single(v => v.Name == "short-claim-v4").Bytes];
        Assert.That((syn.Length, synAck.Length), Is.EqualTo((40, 40)));
        var pcap = WritePcap("handshake.pcap", [Packet(syn, onSynAck: false, 0), Reverse(Packet(synAck, onSynAck: true, 0))]);
        var rows = Tshark.Fields(pcap, VectorFields);
        Assert.That(rows, Has.Count.EqualTo(2));
        Assert.Multiple(() =>
        {
            Assert.That(rows[0]["mp_proxy.msg"] + "/" + rows[0]["mp_proxy.status"], Is.EqualTo("1/Ok"));
            Assert.That(rows[1]["mp_proxy.msg"] + "/" + rows[1]["mp_proxy.status"], Is.EqualTo("2/Ok"));
            Assert.That(rows[1]["mp_proxy.tag"], Is.EqualTo("9f54"));
        });
        Assert.That(Tshark.Verbose(pcap), Does.Not.Contain("Lua Error"));
    }

    private string WritePcap(string name, IEnumerable<byte[]> packets)
    {
        string path = Path.Combine(_dir, name);
        using var stream = File.Create(path);
        using var writer = new Pcap.PcapWriter(stream, Pcap.PcapLinkType.Ethernet);
        uint second = 0;
        foreach (var packet in packets)
        {
            writer.WriteIpPacket(packet, second++);
        }

        return path;
    }

    // The answer to an IPv4 segment: addresses and ports swapped, ack = ISN + 1.
    private static byte[] Reverse(byte[] packet)
    {
        var p = packet.AsSpan();
        byte[] source = p[12..16].ToArray();
        p[16..20].CopyTo(p[12..16]);
        source.CopyTo(p[16..20]);
        ushort sourcePort = BinaryPrimitives.ReadUInt16BigEndian(p[20..]);
        BinaryPrimitives.WriteUInt16BigEndian(p[20..], BinaryPrimitives.ReadUInt16BigEndian(p[22..]));
        BinaryPrimitives.WriteUInt16BigEndian(p[22..], sourcePort);
        BinaryPrimitives.WriteUInt32BigEndian(p[28..], BinaryPrimitives.ReadUInt32BigEndian(p[24..]) + 1);
        BinaryPrimitives.WriteUInt32BigEndian(p[24..], 0xA0B0C0D0);
        var error = InternetChecksum.TryFillChecksums(packet);
        return error == WireError.None ? packet : throw new InvalidOperationException(error.ToString());
    }

    // One IPv4 segment per option list, on its own source port so that tshark's stream analysis never links two
    // test packets. Options are padded to a multiple of 4 with EOL (so padding is not another option).
    private static byte[] Packet(byte[] options, bool onSynAck, int index)
    {
        var padded = new byte[(options.Length + 3) / 4 * 4];
        options.CopyTo(padded, 0);
        var flags = onSynAck ? TcpFlags.Syn | TcpFlags.Ack : TcpFlags.Syn;
        var packet = PacketBuilder.Tcp(ipv6: false, padded, [], flags);
        BinaryPrimitives.WriteUInt16BigEndian(packet.AsSpan(20), (ushort)(41000 + index));
        var error = InternetChecksum.TryFillChecksums(packet);
        if (error != WireError.None)
        {
            throw new InvalidOperationException(error.ToString());
        }

        return packet;
    }
}
