namespace ProxySelection.Wire.Fuzz;

/// <summary>
/// Builds fuzz inputs from a seed corpus with one <see cref="Random"/>: the same seed gives the same inputs in the
/// same order. Inputs are written into a caller-owned buffer; nothing is allocated per input.
/// </summary>
public sealed class Mutator
{
    /// <summary>Largest input produced (an Ethernet MTU).</summary>
    public const int MaxInputLength = 1500;

    // IPv6 extension headers the IP parser walks (hop-by-hop, routing, fragment, AH, destination options) and TCP.
    private static readonly byte[] InterestingNextHeaders = [0, 43, 44, 51, 60, 6];

    private readonly Random _random;
    private readonly byte[][] _corpus;

    public Mutator(int seed, IReadOnlyList<byte[]> corpus)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        if (corpus.Count == 0)
        {
            throw new ArgumentException("the corpus is empty", nameof(corpus));
        }

        _random = new Random(seed);
        _corpus = [.. corpus];
    }

    /// <summary>Which mutation produced the last input (for crash reports).</summary>
    public string LastKind { get; private set; } = "";

    /// <summary>Writes the next input into <paramref name="buffer"/> (at least <see cref="MaxInputLength"/> bytes) and returns its length.</summary>
    public int Next(Span<byte> buffer)
    {
        int choice = _random.Next(100);
        return choice switch
        {
            < 5 => RandomBytes(buffer),
            < 15 => RandomOptions(buffer),
            < 35 => BitFlips(buffer),
            < 50 => Truncation(buffer),
            < 75 => LengthByteEdit(buffer),
            < 90 => OptionSplice(buffer),
            _ => HeaderFieldEdit(buffer),
        };
    }

    private int RandomBytes(Span<byte> buffer)
    {
        LastKind = "random bytes";
        int length = _random.Next(0, 120);
        _random.NextBytes(buffer[..length]);
        if (length > 0 && _random.Next(2) == 0)
        {
            // Keep the version nibble valid half of the time so the bytes get past the first check.
            buffer[0] = (byte)((_random.Next(2) == 0 ? 0x40 : 0x60) | (buffer[0] & 0x0F));
        }

        return length;
    }

    /// <summary>A real IP/TCP header whose option area is replaced by random bytes, sometimes led by kind 30.</summary>
    private int RandomOptions(Span<byte> buffer)
    {
        LastKind = "random options";
        int length = CopySeed(buffer, out int optionsStart, out int optionsLength);
        if (optionsLength == 0)
        {
            return length;
        }

        var options = buffer.Slice(optionsStart, optionsLength);
        _random.NextBytes(options);
        if (_random.Next(2) == 0)
        {
            int at = _random.Next(optionsLength);
            options[at] = 30;
            if (at + 1 < optionsLength)
            {
                options[at + 1] = (byte)_random.Next(0, optionsLength - at + 3);
            }

            if (at + 2 < optionsLength)
            {
                options[at + 2] = (byte)((_random.Next(16) << 4) | (options[at + 2] & 0x0F));
            }
        }

        return length;
    }

    private int BitFlips(Span<byte> buffer)
    {
        LastKind = "bit flips";
        int length = CopySeed(buffer, out int optionsStart, out int optionsLength);
        int flips = 1 + _random.Next(8);
        for (int i = 0; i < flips && length > 0; i++)
        {
            // Most flips land in the option area, where the interesting parsing is.
            int at = optionsLength > 0 && _random.Next(4) != 0 ? optionsStart + _random.Next(optionsLength) : _random.Next(length);
            buffer[at] ^= (byte)(1 << _random.Next(8));
        }

        return length;
    }

    private int Truncation(Span<byte> buffer)
    {
        LastKind = "truncation";
        int length = CopySeed(buffer, out int optionsStart, out int optionsLength);
        return _random.Next(3) == 0 || optionsLength == 0
            ? _random.Next(length + 1)
            : optionsStart + _random.Next(optionsLength + 1);
    }

    /// <summary>Sets the length byte of one option (or of an MPTCP suboption) to an edge or random value.</summary>
    private int LengthByteEdit(Span<byte> buffer)
    {
        LastKind = "length byte edit";
        int length = CopySeed(buffer, out int optionsStart, out int optionsLength);
        Span<int> lengthOffsets = stackalloc int[40];
        int count = 0;
        int i = optionsStart;
        int end = optionsStart + optionsLength;
        while (i < end && count < lengthOffsets.Length)
        {
            byte kind = buffer[i];
            if (kind == 0)
            {
                break;
            }

            if (kind == 1 || i + 1 >= end)
            {
                i++;
                continue;
            }

            lengthOffsets[count++] = i + 1;
            int optionLength = buffer[i + 1];
            i += Math.Max(optionLength, 2);
        }

        if (count == 0)
        {
            return length;
        }

        int target = lengthOffsets[_random.Next(count)];
        int current = buffer[target];
        buffer[target] = _random.Next(8) switch
        {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => 255,
            4 => (byte)(current + 1),
            5 => (byte)(current - 1),
            6 => (byte)(end - target + 1),
            _ => (byte)_random.Next(256),
        };
        return length;
    }

    /// <summary>Replaces a stretch of one seed's option area with a stretch of another seed's options.</summary>
    private int OptionSplice(Span<byte> buffer)
    {
        LastKind = "option splice";
        int length = CopySeed(buffer, out int optionsStart, out int optionsLength);
        var donor = _corpus[_random.Next(_corpus.Length)];
        if (optionsLength == 0 || !TryFindOptions(donor, out int donorStart, out int donorLength) || donorLength == 0)
        {
            return length;
        }

        int take = 1 + _random.Next(donorLength);
        int from = donorStart + _random.Next(donorLength - take + 1);
        int to = optionsStart + _random.Next(optionsLength);
        int room = optionsStart + optionsLength - to;
        donor.AsSpan(from, Math.Min(take, room)).CopyTo(buffer[to..]);
        return length;
    }

    /// <summary>Edits IHL, total/payload length, next header or TCP data offset.</summary>
    private int HeaderFieldEdit(Span<byte> buffer)
    {
        LastKind = "header field edit";
        int length = CopySeed(buffer, out int optionsStart, out _);
        bool v6 = buffer[0] >> 4 == 6;
        int tcpStart = optionsStart - 20;
        switch (_random.Next(5))
        {
            case 0 when !v6:
                buffer[0] = (byte)(0x40 | _random.Next(16));
                break;
            case 1:
                int lengthOffset = v6 ? 4 : 2;
                buffer[lengthOffset] = (byte)_random.Next(256);
                buffer[lengthOffset + 1] = (byte)_random.Next(256);
                break;
            case 2:
                buffer[v6 ? 6 : 9] = _random.Next(2) == 0 ? (byte)_random.Next(256) : InterestingNextHeaders[_random.Next(InterestingNextHeaders.Length)];
                break;
            case 3:
                buffer[0] = (byte)((_random.Next(16) << 4) | (buffer[0] & 0x0F));
                break;
            default:
                buffer[tcpStart + 12] = (byte)((_random.Next(16) << 4) | (buffer[tcpStart + 12] & 0x0F));
                break;
        }

        return length;
    }

    private int CopySeed(Span<byte> buffer, out int optionsStart, out int optionsLength)
    {
        var seed = _corpus[_random.Next(_corpus.Length)];
        int length = Math.Min(seed.Length, MaxInputLength);
        seed.AsSpan(0, length).CopyTo(buffer);
        if (!TryFindOptions(seed.AsSpan(0, length), out optionsStart, out optionsLength))
        {
            optionsStart = 0;
            optionsLength = 0;
        }

        return length;
    }

    /// <summary>Locates the TCP option area of a well-formed seed without the wire codec (seeds are plain IPv4/IPv6 + TCP).</summary>
    private static bool TryFindOptions(ReadOnlySpan<byte> packet, out int start, out int length)
    {
        start = 0;
        length = 0;
        if (packet.Length < 20)
        {
            return false;
        }

        int tcp = packet[0] >> 4 == 6 ? 40 : (packet[0] & 0x0F) * 4;
        if (tcp < 20 || packet.Length < tcp + 20)
        {
            return false;
        }

        int dataOffset = (packet[tcp + 12] >> 4) * 4;
        if (dataOffset < 20 || packet.Length < tcp + dataOffset)
        {
            return false;
        }

        start = tcp + 20;
        length = dataOffset - 20;
        return true;
    }
}
