using System.Buffers.Binary;
using System.Security.Cryptography;

namespace ProxySelection.Wire.MpProxy;

/// <summary>
/// The operator domain's MP_PROXY keys (spec §9): a current key that signs, and during a rotation window the
/// previous key, which still verifies. Thread-safe: readers take an immutable snapshot, rotation swaps it.
/// Sign and Verify allocate nothing.
/// </summary>
public sealed class MpProxyKeyRing
{
    /// <summary>Shortest key accepted: half the HMAC-SHA256 block of 32 recommended bytes would be guessable sooner.</summary>
    public const int MinimumKeyLength = 16;

    /// <summary>Domain-separation label at the start of every tag input (spec §9.2).</summary>
    public static ReadOnlySpan<byte> Label => "ProxySelection MP_PROXY v1"u8;

    private const byte SegmentSyn = 1;
    private const byte SegmentSynAck = 2;

    // label 26 + segment 1 + header 8 + family 1 + addresses 32 + ports 4 + ISNs 8.
    private const int MaxInputLength = 80;

    private sealed record Snapshot(byte CurrentId, byte[] Current, byte PreviousId, byte[]? Previous);

    private readonly Lock _rotation = new();
    private Snapshot _keys;

    public MpProxyKeyRing(byte keyId, ReadOnlySpan<byte> key)
    {
        _keys = new Snapshot(keyId, CheckedCopy(key), 0, null);
    }

    public byte CurrentKeyId => Volatile.Read(ref _keys).CurrentId;

    /// <summary>The previous key's id while a rotation window is open, else null.</summary>
    public byte? PreviousKeyId
    {
        get
        {
            var keys = Volatile.Read(ref _keys);
            return keys.Previous is null ? null : keys.PreviousId;
        }
    }

    /// <summary>Makes <paramref name="key"/> current; the old current key stays valid for verification until <see cref="RetirePrevious"/>.</summary>
    public void Rotate(byte keyId, ReadOnlySpan<byte> key)
    {
        var copy = CheckedCopy(key);
        lock (_rotation)
        {
            if (keyId == _keys.CurrentId)
            {
                throw new ArgumentException("a new key needs a new key id, or long-form tags would be ambiguous", nameof(keyId));
            }

            Volatile.Write(ref _keys, new Snapshot(keyId, copy, _keys.CurrentId, _keys.Current));
        }
    }

    /// <summary>
    /// First phase of a domain-wide rotation (spec §9.4): <paramref name="key"/> verifies from now on but does not
    /// sign yet, so proxies that switch to it earlier are understood by those that switch later. It takes the
    /// previous-key slot; a following <see cref="Rotate"/> to the same key makes it current.
    /// </summary>
    public void AcceptNext(byte keyId, ReadOnlySpan<byte> key)
    {
        var copy = CheckedCopy(key);
        lock (_rotation)
        {
            if (keyId == _keys.CurrentId)
            {
                throw new ArgumentException("the next key needs a key id other than the current one", nameof(keyId));
            }

            Volatile.Write(ref _keys, _keys with { PreviousId = keyId, Previous = copy });
        }
    }

    /// <summary>
    /// Takes <paramref name="other"/>'s keys (its current key and, if any, its verify-only key) in one step, as a
    /// configuration reload installs the keys of the step of a rotation (spec §9.4) the operator pushed.
    /// Check <see cref="FindConflict"/> first: the ring does not refuse a reused key id here.
    /// </summary>
    public void ReplaceWith(MpProxyKeyRing other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var next = Volatile.Read(ref other._keys);
        lock (_rotation)
        {
            Volatile.Write(ref _keys, next);
        }
    }

    /// <summary>
    /// A key id that names one key here and another in <paramref name="other"/>, else null. A key id is not reused
    /// before its key is retired (spec §9.4): long-form tags name the key by id, so a reused id would verify against
    /// the wrong key during the skew between proxies.
    /// </summary>
    public byte? FindConflict(MpProxyKeyRing other)
    {
        ArgumentNullException.ThrowIfNull(other);
        var mine = Volatile.Read(ref _keys);
        var theirs = Volatile.Read(ref other._keys);
        foreach (var (id, key) in Keys(mine))
        {
            foreach (var (otherId, otherKey) in Keys(theirs))
            {
                if (id == otherId && !CryptographicOperations.FixedTimeEquals(key, otherKey))
                {
                    return id;
                }
            }
        }

        return null;
    }

    private static IEnumerable<(byte Id, byte[] Key)> Keys(Snapshot keys)
    {
        yield return (keys.CurrentId, keys.Current);
        if (keys.Previous is not null)
        {
            yield return (keys.PreviousId, keys.Previous);
        }
    }

    /// <summary>Closes the rotation window: tags under the previous key stop verifying.</summary>
    public void RetirePrevious()
    {
        lock (_rotation)
        {
            Volatile.Write(ref _keys, _keys with { Previous = null, PreviousId = 0 });
        }
    }

    /// <summary>The current key's id and a copy of its bytes: for a signer outside this process's code (the kernel's,
    /// which computes the same tags, spec §9.2).</summary>
    public (byte Id, byte[] Key) CopyCurrent()
    {
        var keys = Volatile.Read(ref _keys);
        return (keys.CurrentId, (byte[])keys.Current.Clone());
    }

    /// <summary>Fills the tag (and, long form, the key id) with the current key. The presence form is left as is.</summary>
    public void Sign(ref MpProxyOption option, in MpProxyFlow flow)
    {
        if (option.TagLength == 0)
        {
            return;
        }

        var keys = Volatile.Read(ref _keys);
        var keyed = option.WithTag(0, keys.CurrentId);
        option = keyed.WithTag(ComputeTag(keys.Current, keyed, flow), keys.CurrentId);
    }

    /// <summary>
    /// True when the tag verifies. The presence form never verifies (it carries nothing to verify); a long form
    /// is checked under the key its key id names; a short form under the current, then the previous key.
    /// </summary>
    public bool Verify(in MpProxyOption option, in MpProxyFlow flow)
    {
        if (option.TagLength == 0)
        {
            return false;
        }

        var keys = Volatile.Read(ref _keys);
        if (option.WireLength == MpProxyOption.LongLength)
        {
            byte[]? key = option.KeyId == keys.CurrentId ? keys.Current
                : keys.Previous is not null && option.KeyId == keys.PreviousId ? keys.Previous
                : null;
            return key is not null && TagEquals(key, option, flow);
        }

        return TagEquals(keys.Current, option, flow) || (keys.Previous is not null && TagEquals(keys.Previous, option, flow));
    }

    /// <summary>
    /// HMAC-SHA256(key, label || segment || option bytes before the tag || family || client address ||
    /// server address || client port || server port || SYN ISN [|| SYN/ACK ISN]) truncated to the option's
    /// tag length, returned right-aligned. Spec §9.2.
    /// </summary>
    public static ulong ComputeTag(ReadOnlySpan<byte> key, in MpProxyOption option, in MpProxyFlow flow)
    {
        Span<byte> mac = stackalloc byte[HMACSHA256.HashSizeInBytes];
        Mac(key, option, flow, mac);
        return option.TagLength switch
        {
            2 => BinaryPrimitives.ReadUInt16BigEndian(mac),
            8 => BinaryPrimitives.ReadUInt64BigEndian(mac),
            _ => 0,
        };
    }

    /// <summary>Writes the exact bytes the MAC covers; returns their length. Exposed for the spec's test vectors.</summary>
    public static int WriteTagInput(Span<byte> destination, in MpProxyOption option, in MpProxyFlow flow)
    {
        int n = 0;
        Label.CopyTo(destination);
        n += Label.Length;
        destination[n++] = flow.HasSynAck ? SegmentSynAck : SegmentSyn;
        n += MpProxyCodec.WriteHeader(destination[n..], option);
        destination[n++] = flow.IsIPv6 ? (byte)6 : (byte)4;
        flow.WriteClientAddress(destination[n..]);
        n += flow.AddressLength;
        flow.WriteServerAddress(destination[n..]);
        n += flow.AddressLength;
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], flow.ClientPort);
        n += 2;
        BinaryPrimitives.WriteUInt16BigEndian(destination[n..], flow.ServerPort);
        n += 2;
        BinaryPrimitives.WriteUInt32BigEndian(destination[n..], flow.SynIsn);
        n += 4;
        if (flow.HasSynAck)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination[n..], flow.SynAckIsn);
            n += 4;
        }

        return n;
    }

    private static void Mac(ReadOnlySpan<byte> key, in MpProxyOption option, in MpProxyFlow flow, Span<byte> mac)
    {
        Span<byte> input = stackalloc byte[MaxInputLength];
        int n = WriteTagInput(input, option, flow);
        HMACSHA256.HashData(key, input[..n], mac);
    }

    private static bool TagEquals(byte[] key, in MpProxyOption option, in MpProxyFlow flow)
    {
        Span<byte> mac = stackalloc byte[HMACSHA256.HashSizeInBytes];
        Mac(key, option, flow, mac);
        Span<byte> received = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(received, option.Tag);
        int length = option.TagLength;
        return CryptographicOperations.FixedTimeEquals(mac[..length], received[(8 - length)..]);
    }

    private static byte[] CheckedCopy(ReadOnlySpan<byte> key)
    {
        if (key.Length < MinimumKeyLength)
        {
            throw new ArgumentException($"an MP_PROXY key needs at least {MinimumKeyLength} bytes (32 recommended)", nameof(key));
        }

        return key.ToArray();
    }
}
