using System.Net;
using System.Text.Json;
using ProxySelection.Wire;
using ProxySelection.Wire.Pcap;

namespace ProxySelection.Host.Tests;

/// <summary>
/// Packets built by the wire writers (every MPTCP suboption and variant, IPv4 and IPv6, checksums filled) are written
/// to a pcap and decoded by tshark; tshark must agree with our decoder on every field and report no malformed
/// packet, bad checksum or error.
/// </summary>
[NonParallelizable]
public class TsharkCrossCheckTests
{
    /// <summary>
    /// tshark warnings that say what the packet is rather than that it is wrong, with the cases they may appear in.
    /// Malformed-packet markers, errors (bad checksum included) and any other warning fail the test.
    /// </summary>
    private static bool IsExpectedWarning(string caseName, string message) => message switch
    {
        // tshark flags every RST.
        _ when message.Contains("Connection reset (RST)", StringComparison.Ordinal) => true,
        // Each packet is its own flow: tshark compares the echoed key with a SYN/ACK it never saw (or, for a v0
        // SYN/ACK with unknown crypto bits, with the key it failed to take from it).
        _ when message.Contains("echoed key in the ACK", StringComparison.Ordinal) =>
            caseName.Contains("MpCapable", StringComparison.Ordinal)
            && (caseName.Contains("_Ack_", StringComparison.Ordinal) || caseName.Contains("_Data", StringComparison.Ordinal) || caseName.Contains("Reserved_MpCapable_v0", StringComparison.Ordinal)),
        // tshark 4.0.17 quirk with flag C (README); v0's HMAC-SHA1, which tshark 4.0 does not implement; and crypto
        // bits D..G set, which name no algorithm tshark knows.
        _ when message.Contains("Unsupported algorithm", StringComparison.Ordinal) =>
            caseName.Contains("_CH", StringComparison.Ordinal) || caseName.Contains("_v0_", StringComparison.Ordinal)
            || caseName.Contains("Reserved_MpCapable", StringComparison.Ordinal),
        // The analysis of an infinite mapping, which is what that case builds.
        _ when message.Contains("Fallback to infinite mapping", StringComparison.Ordinal) => caseName.Contains("Dss_InfiniteMapping", StringComparison.Ordinal),
        _ => false,
    };

    private static readonly List<(string Name, byte[] Packet)> Cases = BuildCases();
    private static IReadOnlyList<TsharkPacket>? _decoded;
    private static string? _pcapPath;

    public static IEnumerable<TestCaseData> CaseNames() =>
        Cases.Select((c, i) => new TestCaseData(i).SetName($"Tshark_Agrees_{c.Name}"));

    [OneTimeSetUp]
    public void DecodeAllWithTshark()
    {
        if (!File.Exists(Tshark.Executable))
        {
            Assert.Fail($"{Tshark.Executable} is not installed (apt-get install tshark); the cross-check needs it");
        }

        _pcapPath = Path.Combine(Path.GetTempPath(), $"proxysel-crosscheck-{Environment.ProcessId}-{Guid.NewGuid():N}.pcap");
        using (var stream = File.Create(_pcapPath))
        using (var writer = new PcapWriter(stream, PcapLinkType.Raw))
        {
            foreach (var (_, packet) in Cases)
            {
                writer.WriteIpPacket(packet);
            }
        }

        _decoded = Tshark.Decode(_pcapPath, PacketBuilder.ServerPort);
    }

    [OneTimeTearDown]
    public void RemovePcap()
    {
        // PROXYSEL_KEEP_PCAP=1 keeps the capture for a look with tshark or Wireshark.
        if (_pcapPath is not null && Environment.GetEnvironmentVariable("PROXYSEL_KEEP_PCAP") != "1")
        {
            File.Delete(_pcapPath);
        }
    }

    [Test]
    public void Tshark_DecodesEveryPacket()
    {
        Assert.That(_decoded, Has.Count.EqualTo(Cases.Count));
    }

    [TestCaseSource(nameof(CaseNames))]
    public void Tshark_AgreesOnEveryField(int index)
    {
        var (name, packet) = Cases[index];
        var theirs = _decoded![index];
        var ours = Decoded.Packet(packet);
        Assert.That(ours.TryGetProperty("error", out _), Is.False, ours.GetRawText());
        var problems = theirs.Problems.Where(p => !IsExpectedWarning(name, p)).ToList();
        Assert.That(problems, Is.Empty, $"tshark reported problems in frame {index + 1} of {_pcapPath}");

        Assert.That(ours.GetProperty("tcp_checksum_status").GetString(), Is.EqualTo("Checksum Status: Good"), "the builder fills the checksums");
        var mismatches = TsharkComparison.Compare(ours, theirs, compareAnalysis: true);
        Assert.That(mismatches, Is.Empty, $"ours: {ours.GetRawText()}");
    }

    private static List<(string Name, byte[] Packet)> BuildCases()
    {
        var cases = new List<(string, byte[])>();
        ushort port = 30000;
        foreach (bool v6 in new[] { false, true })
        {
            string ip = v6 ? "v6" : "v4";
            void Add<T>(string name, TcpFlags flags, in T option, int payload = 0)
                where T : struct, IMptcpSuboption =>
                cases.Add(($"{ip}_{name}", PacketBuilder.Build(v6, port++, flags, option, payload)));

            const TcpFlags Syn = TcpFlags.Syn;
            const TcpFlags SynAck = TcpFlags.Syn | TcpFlags.Ack;
            const TcpFlags Ack = TcpFlags.Ack;
            // tshark derives a token only the first time it sees a key: every packet gets keys of its own.
            ulong KeyA() => 0x9b5e1439fd423ea8 + (port * 7919UL);
            ulong KeyB() => 0x7b3e7f18185a2c0e + (port * 104729UL);

            // MP_CAPABLE v1: every form; flags H, AH, CH.
            foreach (var (flagName, flags) in new[]
            {
                ("H", MpCapableFlags.HmacSha256),
                ("AH", MpCapableFlags.ChecksumRequired | MpCapableFlags.HmacSha256),
                ("CH", MpCapableFlags.NoJoinToSourceAddress | MpCapableFlags.HmacSha256),
            })
            {
                Add($"MpCapable_v1_Syn_{flagName}", Syn, new MpCapable(MpCapableForm.NoKey, 1, flags));
                Add($"MpCapable_v1_SynAck_{flagName}", SynAck, new MpCapable(MpCapableForm.SenderKey, 1, flags, KeyA()));
                Add($"MpCapable_v1_Ack_{flagName}", Ack, new MpCapable(MpCapableForm.BothKeys, 1, flags, KeyB(), KeyA()));
                Add($"MpCapable_v1_Data_{flagName}", Ack | TcpFlags.Psh, new MpCapable(MpCapableForm.BothKeysDataLength, 1, flags, KeyB(), KeyA(), 8), payload: 8);
                Add($"MpCapable_v1_DataChecksum_{flagName}", Ack | TcpFlags.Psh,
                    new MpCapable(MpCapableForm.BothKeysDataLengthChecksum, 1, flags, KeyB(), KeyA(), 8, 0xbeef), payload: 8);
            }

            // MP_CAPABLE v0 (RFC 6824): SYN and SYN/ACK carry the sender's key, the ACK both.
            Add("MpCapable_v0_Syn_AH", Syn, new MpCapable(MpCapableForm.SenderKey, 0, MpCapableFlags.ChecksumRequired | MpCapableFlags.HmacSha256, KeyA()));
            Add("MpCapable_v0_SynAck_H", SynAck, new MpCapable(MpCapableForm.SenderKey, 0, MpCapableFlags.HmacSha256, KeyB()));
            Add("MpCapable_v0_Ack_H", Ack, new MpCapable(MpCapableForm.BothKeys, 0, MpCapableFlags.HmacSha256, KeyA(), KeyB()));

            // MP_JOIN.
            foreach (bool backup in new[] { false, true })
            {
                string b = backup ? "Backup" : "NoBackup";
                Add($"MpJoin_Syn_{b}", Syn, MpJoin.Syn(backup, 3, 0x9f94fb0a, 0x24cf2b0f));
                Add($"MpJoin_SynAck_{b}", SynAck, MpJoin.SynAck(backup, 7, 0xa920ef6c8e0a5a15, 0x5acb4b85));
            }

            Add("MpJoin_Ack", Ack, MpJoin.Ack(Convert.FromHexString("5a926e61820cbbcbfeb0eb5bd9f2ea492a08b4e7")));

            // DSS: every combination of F m M a A, with a checksum whenever there is a mapping.
            for (int bits = 0; bits < 32; bits++)
            {
                var flags = (DssFlags)bits;
                bool mapping = (flags & DssFlags.MappingPresent) != 0;
                ushort length = (ushort)(mapping ? 16 : 0);
                ulong dataAck = (flags & DssFlags.DataAck8) != 0 ? 0x1122334455667788UL : 0x11223344UL;
                ulong dsn = (flags & DssFlags.Dsn8) != 0 ? 0x99aabbccddeeff00UL : 0x99aabbccUL;
                Add($"Dss_{DssName(flags)}", Ack, new Dss(flags, dataAck, dsn, 1, length), payload: length);
                if (mapping)
                {
                    Add($"Dss_{DssName(flags)}_Checksum", Ack, new Dss(flags, dataAck, dsn, 1, length, true, 0x1234), payload: length);
                }
            }

            Add("Dss_InfiniteMapping", Ack, new Dss(DssFlags.DataAckPresent | DssFlags.MappingPresent | DssFlags.Dsn8, 5, 0x1000, 1, 0, true, 0));
            Add("Dss_InfiniteMapping_Dsn4", Ack, new Dss(DssFlags.DataAckPresent | DssFlags.MappingPresent, 5, 0x1000, 1, 0));

            // ADD_ADDR: both families, with and without port, announce (HMAC) and echo.
            var v4Address = IPAddress.Parse("198.18.1.2").GetAddressBytes();
            var v6Address = IPAddress.Parse("2001:db8:1::2").GetAddressBytes();
            foreach (var (family, address) in new[] { ("v4", v4Address), ("v6", v6Address) })
            {
                Add($"AddAddr_{family}_Hmac", Ack, AddAddr.Announce(1, address, 0xcae0f5c4a3d0a9e9));
                Add($"AddAddr_{family}_Port_Hmac", Ack, AddAddr.Announce(2, address, 0x1614ac9a5a9a5d8e, 18100));
                Add($"AddAddr_{family}_Echo", Ack, AddAddr.CreateEcho(1, address));
                Add($"AddAddr_{family}_Port_Echo", Ack, AddAddr.CreateEcho(2, address, 18100));
            }

            // REMOVE_ADDR with 1, 2 and 5 ids.
            Add("RemoveAddr_1", Ack, new RemoveAddr([1]));
            Add("RemoveAddr_2", Ack, new RemoveAddr([1, 2]));
            Add("RemoveAddr_5", Ack, new RemoveAddr([0, 3, 9, 200, 255]));

            // MP_PRIO: backup on and off, with and without address id.
            Add("MpPrio_Backup", Ack, new MpPrio(true));
            Add("MpPrio_NoBackup", Ack, new MpPrio(false));
            Add("MpPrio_Backup_AddressId", Ack, new MpPrio(true, 4));
            Add("MpPrio_NoBackup_AddressId", Ack, new MpPrio(false, 4));

            Add("MpFail", Ack, new MpFail(0xad40c90c5d2f9834));
            Add("MpFastClose", TcpFlags.Rst | TcpFlags.Ack, new MpFastClose(0x99ce42fd3a2bd1bc));

            // MP_TCPRST: no flag, T, all flags; every defined reason and an undefined one.
            Add("MpTcpRst_NoFlags_Reason0", TcpFlags.Rst, new MpTcpRst(MpTcpRstFlags.None, MpTcpRstReason.Unspecified));
            Add("MpTcpRst_T_Reason3", TcpFlags.Rst, new MpTcpRst(MpTcpRstFlags.Transient, MpTcpRstReason.AdministrativelyProhibited));
            Add("MpTcpRst_UVWT_Reason6", TcpFlags.Rst,
                new MpTcpRst(MpTcpRstFlags.ReservedU | MpTcpRstFlags.ReservedV | MpTcpRstFlags.ReservedW | MpTcpRstFlags.Transient, MpTcpRstReason.MiddleboxInterference));
            for (int reason = 1; reason <= 5; reason++)
            {
                Add($"MpTcpRst_Reason{reason}", TcpFlags.Rst, new MpTcpRst(MpTcpRstFlags.None, (MpTcpRstReason)reason));
            }

            Add("MpTcpRst_Reason200", TcpFlags.Rst, new MpTcpRst(MpTcpRstFlags.None, (MpTcpRstReason)200));

            // Reserved bits set: they must be read (and shown) where tshark shows them.
            void AddRaw(string name, TcpFlags flags, string hex) =>
                cases.Add(($"{ip}_{name}", PacketBuilder.BuildRaw(v6, port++, flags, Convert.FromHexString(hex))));
            AddRaw("Reserved_MpCapable_v1_Syn_DH", Syn, "1e040111");
            AddRaw("Reserved_MpCapable_v1_Syn_BEFG", Syn, "1e04014f");
            AddRaw("Reserved_MpCapable_v0_SynAck_ACH", SynAck, $"1e0c00a1{KeyA():x16}");
            AddRaw("Reserved_MpJoin_Syn", Syn, "1e0c1f0112345678deadbeef");
            AddRaw("Reserved_MpJoin_SynAck", SynAck, "1e101e0211223344556677880badf00d");
            AddRaw("Reserved_MpJoin_Ack", Ack, "1e181fff5a926e61820cbbcbfeb0eb5bd9f2ea492a08b4e7");
            AddRaw("Reserved_Dss_Byte2And3", Ack, "1e082fe111223344");
            AddRaw("Reserved_AddAddr_v4", Ack, "1e103e01c6120102cae0f5c4a3d0a9e9");
            AddRaw("Reserved_RemoveAddr", Ack, "1e044f01");
            AddRaw("Reserved_MpPrio", Ack, "1e035f");
            AddRaw("Reserved_MpFail", Ack, "1e0c6abcad40c90c5d2f9834");
            AddRaw("Reserved_MpFastClose", TcpFlags.Rst | TcpFlags.Ack, "1e0c7fff99ce42fd3a2bd1bc");

            // MP_EXPERIMENTAL: low nibble non-zero (tshark 4.0 asserts on streams whose SYN carried 0xF0).
            Add("MpExperimental_Empty", Syn, new MpExperimental(1, []));
            Add("MpExperimental_Data", Syn, new MpExperimental(5, [0x50, 0x58, 0x01, 0x02, 0x03]));
        }

        return cases;
    }

    private static string DssName(DssFlags flags)
    {
        var name = string.Concat(
            (flags & DssFlags.DataFin) != 0 ? "F" : "",
            (flags & DssFlags.Dsn8) != 0 ? "m" : "",
            (flags & DssFlags.MappingPresent) != 0 ? "M" : "",
            (flags & DssFlags.DataAck8) != 0 ? "a" : "",
            (flags & DssFlags.DataAckPresent) != 0 ? "A" : "");
        return name.Length == 0 ? "None" : name;
    }
}
