using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using ProxySelection.Wire.MpProxy;

namespace ProxySelection.Wire.Tests.MpProxy;

/// <summary>
/// Recomputes every test vector in the spec's Appendix A with the codec, so the draft and the code cannot
/// drift. The spec is read from the clone (RepositoryPaths).
/// </summary>
public partial class MpProxySpecVectorTests
{
    private const string SpecFile = "draft-proxyselection-mptcp-proxy-selection.md";

    public sealed record Vector(string Name, string Form, string Message, string Priority, string ProxyId, string Flow, string KeyId, string Hex)
    {
        public override string ToString() => Name;
    }

    private static string Section(string heading, string nextHeading)
    {
        string text = SpecText();
        int start = text.IndexOf("\n" + heading, StringComparison.Ordinal);
        int end = text.IndexOf("\n" + nextHeading, StringComparison.Ordinal);
        if (start < 0 || end < start)
        {
            throw new InvalidDataException($"the spec has no '{heading}' followed by '{nextHeading}'");
        }

        return text[start..end];
    }

    private static string SpecText() => File.ReadAllText(Path.Combine(RepositoryPaths.Spec, SpecFile));

    private static string AppendixA() => Section("## Appendix A.", "## Appendix B.");

    private static IEnumerable<string[]> TableRows(string section, Regex firstCell) =>
        section.Split('\n')
            .Where(line => line.StartsWith('|'))
            .Select(line => line.Trim().Trim('|').Split('|').Select(c => c.Trim().Trim('`')).ToArray())
            .Where(cells => firstCell.IsMatch(cells[0]));

    public static IEnumerable<Vector> Vectors() =>
        // Vector rows are the ones whose first cell is code-quoted; that skips the header and rule rows.
        TableRows(string.Join('\n', AppendixA().Split('\n').Where(line => line.StartsWith("| `", StringComparison.Ordinal))), VectorName())
            .Where(cells => cells.Length == 8)
            .Select(c => new Vector(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]));

    private static Dictionary<string, MpProxyFlow> Flows()
    {
        var flows = new Dictionary<string, MpProxyFlow>();
        foreach (var c in TableRows(AppendixA(), FlowName()).Where(cells => cells.Length == 7))
        {
            var flow = MpProxyFlow.ForSyn(IPAddress.Parse(c[1]), IPAddress.Parse(c[2]), ushort.Parse(c[3], CultureInfo.InvariantCulture),
                ushort.Parse(c[4], CultureInfo.InvariantCulture), ParseHex32(c[5]));
            flows[c[0]] = c[6].StartsWith("0x", StringComparison.Ordinal) ? flow.WithSynAck(ParseHex32(c[6])) : flow;
        }

        return flows;
    }

    private static uint ParseHex32(string text) => uint.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private static byte[] Key(string keyId) => keyId switch
    {
        "1" => MpProxyTestData.Key1,
        "2" => MpProxyTestData.Key2,
        _ => throw new InvalidDataException($"the spec names key id {keyId}, which it does not define"),
    };

    private static MpProxyOption Build(Vector v)
    {
        if (v.Form == "presence")
        {
            return MpProxyOption.Presence();
        }

        var message = Enum.Parse<MpProxyMessage>(v.Message);
        byte priority = byte.Parse(v.Priority, CultureInfo.InvariantCulture);
        byte proxyId = byte.Parse(v.ProxyId, CultureInfo.InvariantCulture);
        return v.Form switch
        {
            "long" => MpProxyOption.Long(message, priority, proxyId),
            "short" => MpProxyOption.Short(message, priority, proxyId),
            _ => throw new InvalidDataException($"unknown form {v.Form}"),
        };
    }

    [TestCaseSource(nameof(Vectors))]
    public void Vector_CodecProducesTheSpecsHex(Vector vector)
    {
        var flow = Flows()[vector.Flow];
        var option = Build(vector);
        if (vector.Form != "presence")
        {
            var ring = new MpProxyKeyRing(byte.Parse(vector.KeyId, CultureInfo.InvariantCulture), Key(vector.KeyId));
            ring.Sign(ref option, flow);
        }

        var bytes = new byte[option.WireLength];
        MpProxyCodec.Write(bytes, option);
        Assert.That(Convert.ToHexStringLower(bytes), Is.EqualTo(vector.Hex));
    }

    [TestCaseSource(nameof(Vectors))]
    public void Vector_ParsesBackAndVerifies(Vector vector)
    {
        var bytes = Convert.FromHexString(vector.Hex);
        Assert.That(MpProxyCodec.TryRead(bytes, out var read), Is.EqualTo(MpProxyStatus.Ok));
        if (vector.Form != "presence")
        {
            var ring = new MpProxyKeyRing(byte.Parse(vector.KeyId, CultureInfo.InvariantCulture), Key(vector.KeyId));
            Assert.That(ring.Verify(read, Flows()[vector.Flow]), Is.True);
        }
    }

    [Test]
    public void AppendixA_CoversEveryMessageKindInEveryForm()
    {
        var vectors = Vectors().ToList();
        Assert.That(vectors.Any(v => v.Form == "presence"), Is.True, "presence form");
        foreach (var message in new[] { MpProxyMessage.Probe, MpProxyMessage.Claim, MpProxyMessage.Defer, MpProxyMessage.Offer, MpProxyMessage.Upgrade })
        {
            foreach (var form in new[] { "short", "long" })
            {
                Assert.That(vectors.Any(v => v.Form == form && v.Message == message.ToString()), Is.True, $"{form} {message}");
            }
        }

        Assert.That(vectors.Any(v => v.Flow.StartsWith("v6", StringComparison.Ordinal)), Is.True, "an IPv6 vector");
        Assert.That(vectors.Any(v => v.KeyId == "2"), Is.True, "a vector under the second key");
    }

    [Test]
    public void AppendixA_WorkedMacsMatchTheCodecsTagInput()
    {
        var section = AppendixA();
        var blocks = WorkedMac().Matches(section);
        Assert.That(blocks, Has.Count.EqualTo(2));
        var vectors = Vectors().ToDictionary(v => v.Name);
        foreach (Match block in blocks)
        {
            var vector = vectors[block.Groups["name"].Value];
            // The input is the hex before the comment column of each indented line up to the blank line.
            var hexInput = string.Concat(block.Groups["input"].Value.Split('\n')
                .Select(line => CommentColumn().Split(line.Trim())[0].Replace(" ", string.Empty, StringComparison.Ordinal)));
            var option = Build(vector).WithTag(0, byte.Parse(vector.KeyId, CultureInfo.InvariantCulture));
            var input = new byte[80];
            int n = MpProxyKeyRing.WriteTagInput(input, option, Flows()[vector.Flow]);
            var mac = HMACSHA256.HashData(Key(vector.KeyId), input.AsSpan(0, n));
            Assert.Multiple(() =>
            {
                Assert.That(hexInput, Is.EqualTo(Convert.ToHexStringLower(input.AsSpan(0, n))), vector.Name + " input");
                Assert.That(block.Groups["mac"].Value, Is.EqualTo(Convert.ToHexStringLower(mac)), vector.Name + " MAC");
                Assert.That(vector.Hex, Does.EndWith(block.Groups["tag"].Value), vector.Name + " tag");
            });
        }
    }

    [Test]
    public void Section56_EveryStatusInTheTableIsACodecStatus()
    {
        // Rows of the receiving table: | condition | status | handling |.
        var statuses = Section("### 5.6.", "### 5.7.").Split('\n')
            .Where(line => line.StartsWith('|'))
            .Select(line => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray())
            .Where(cells => cells.Length == 3 && cells[1].Length > 0 && char.IsUpper(cells[1][0]) && cells[1] != "status")
            .Select(cells => cells[1])
            .ToList();
        Assert.That(statuses, Has.Count.GreaterThanOrEqualTo(9));
        Assert.That(statuses, Has.All.Matches<string>(name => Enum.TryParse<MpProxyStatus>(name, out _)));
    }

    [Test]
    public void Section54_MessageKindNumbersMatchTheCodec()
    {
        // Rows of the kinds table: | Msg | name | carried on | meaning |, assigned kinds only.
        var kinds = Section("### 5.4.", "### 5.5.").Split('\n')
            .Where(line => line.StartsWith('|'))
            .Select(line => line.Trim().Trim('|').Split('|').Select(c => c.Trim()).ToArray())
            .Where(cells => cells.Length == 4 && int.TryParse(cells[0], out _))
            .ToDictionary(cells => int.Parse(cells[0], CultureInfo.InvariantCulture), cells => cells[1]);
        foreach (var message in new[] { MpProxyMessage.Probe, MpProxyMessage.Claim, MpProxyMessage.Defer, MpProxyMessage.Offer, MpProxyMessage.Upgrade })
        {
            Assert.That(kinds[(int)message], Is.EqualTo(message.ToString()));
        }

        Assert.That(kinds[0], Is.EqualTo("(unassigned)"));
    }

    [GeneratedRegex("^[a-z0-9-]+$")]
    private static partial Regex VectorName();

    [GeneratedRegex("^v[46]-syn(ack)?$")]
    private static partial Regex FlowName();

    [GeneratedRegex(@"Worked MAC, `(?<name>[a-z0-9-]+)`[^\n]*\n\n(?<input>(?:    [0-9a-f][^\n]*\n)+)\n    HMAC-SHA256\(key \d, M\) = (?<mac>[0-9a-f]{64})\n    tag \(first \d bytes\)\s+= (?<tag>[0-9a-f]+)")]
    private static partial Regex WorkedMac();

    [GeneratedRegex(" {2,}")]
    private static partial Regex CommentColumn();
}
